"""Codec negotiation for a camera's H.264 profile against real aiortc offers."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from kitchencam.relay.media import StreamInfo
from kitchencam.relay.webrtc import check_offer


async def _offer() -> tuple[RTCPeerConnection, str]:
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("video", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    return client, client.localDescription.sdp


@pytest.mark.parametrize(
    ("camera_plid", "profile"),
    [
        ("42c01e", "Constrained Baseline"),  # cheap cameras: constraint flags differ from 42e01f
        ("42c016", "Constrained Baseline"),  # x264's baseline at level 2.2
        ("42e01f", "Constrained Baseline"),
    ],
)
async def test_a_constrained_baseline_camera_negotiates_with_the_offered_string(
    camera_plid: str, profile: str
) -> None:
    client, offer = await _offer()
    relay = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        preferences = check_offer(offer, StreamInfo("h264", profile, camera_plid))
        assert preferences[0].parameters["profile-level-id"] == "42e01f"
        transceiver = relay.addTransceiver("video", direction="sendonly")
        transceiver.setCodecPreferences(preferences)
        await relay.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await relay.setLocalDescription(await relay.createAnswer())
        answer = relay.localDescription.sdp
        assert "H264/90000" in answer
        assert "profile-level-id=42e01f" in answer
    finally:
        await relay.close()
        await client.close()
