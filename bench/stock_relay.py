"""A stock aiortc pass-through relay: the same-machine anchor of ``bench/relay.py --variant stock``.

What aiortc's examples do for pass-through: ``MediaPlayer(url, decode=False)`` pulls the camera
with PyAV, ``MediaRelay().subscribe(track, buffered=False)`` fans its packets out, and each
viewer's sender packetises every picture itself with ``H264Encoder.pack``. It speaks just enough
HTTP for the bench: ``POST /cameras`` (JSON ``{"url"}``) opens the camera, ``DELETE
/cameras/{id}`` closes it, ``POST /whep/{id}`` answers an offer (400 for a malformed one),
``DELETE /whep/{id}/{session}`` ends a viewer, ``GET /healthz``. Bench only: module-level
peers, no limits, no error mapping.

Run: ``python bench/stock_relay.py PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from pathlib import Path

from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kitchencam.relay.webrtc import configure_host_addresses

CAMERA_ID = "stock"
PLAYER = web.AppKey("player", dict)
SINK = web.AppKey("sink", dict)
PEERS = web.AppKey("peers", dict)
FANOUT = web.AppKey("fanout", MediaRelay)


async def add_camera(request: web.Request) -> web.Response:
    """Open the camera (one at a time)."""
    url = (await request.json())["url"]
    player = await asyncio.to_thread(
        MediaPlayer, url, decode=False, options={"rtsp_transport": "tcp"}
    )
    request.app[PLAYER][CAMERA_ID] = player
    # A consumer with no peer keeps the camera pulled with no viewer (MediaRelay would stop
    # reading otherwise), so the bench's 0-viewer baseline includes ingest, as ours does.
    sink = request.app[FANOUT].subscribe(player.video, buffered=False)
    request.app[SINK][CAMERA_ID] = asyncio.create_task(drain(sink))
    return web.json_response({"id": CAMERA_ID}, status=201)


async def drain(track: MediaStreamTrack) -> None:
    """Read a track forever."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def delete_camera(request: web.Request) -> web.Response:
    """Close every viewer and the camera."""
    await close_peers(request.app)
    sink = request.app[SINK].pop(CAMERA_ID, None)
    if sink is not None:
        sink.cancel()
    player = request.app[PLAYER].pop(CAMERA_ID, None)
    if player is not None and player.video is not None:
        player.video.stop()
    return web.Response(status=204)


async def play(request: web.Request) -> web.Response:
    """Answer a WHEP offer with the camera's packets, packetised per viewer by aiortc."""
    player = request.app[PLAYER].get(CAMERA_ID)
    offer = await request.text()
    if player is None:
        return web.Response(status=503)
    if "a=fingerprint" not in offer:
        return web.Response(status=400, text="malformed offer")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="sendonly")
    transceiver.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType in ("video/H264", "video/rtx")
        ]
    )
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    transceiver.sender.replaceTrack(request.app[FANOUT].subscribe(player.video, buffered=False))
    await pc.setLocalDescription(await pc.createAnswer())
    session = secrets.token_urlsafe(16)
    request.app[PEERS][session] = pc
    return web.Response(
        status=201,
        text=pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": f"/whep/{CAMERA_ID}/{session}"},
    )


async def stop(request: web.Request) -> web.Response:
    """End one viewer."""
    pc = request.app[PEERS].pop(request.match_info["session"], None)
    if pc is not None:
        await pc.close()
    return web.Response(status=200)


async def healthz(request: web.Request) -> web.Response:
    """Always fine."""
    return web.json_response({"ok": True})


async def close_peers(app: web.Application) -> None:
    """Close every viewer."""
    peers = list(app[PEERS].values())
    app[PEERS].clear()
    await asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)


def create_app() -> web.Application:
    """The stock relay's app."""
    app = web.Application()
    app[PLAYER] = {}
    app[SINK] = {}
    app[PEERS] = {}
    app[FANOUT] = MediaRelay()
    app.router.add_post("/cameras", add_camera)
    app.router.add_delete("/cameras/{camera}", delete_camera)
    app.router.add_post("/whep/{camera}", play)
    app.router.add_delete("/whep/{camera}/{session}", stop)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(close_peers)
    return app


if __name__ == "__main__":
    configure_host_addresses(["127.0.0.1"])
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
