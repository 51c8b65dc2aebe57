"""``kitchencam serve`` with a prototype lean RTP send loop patched into aiortc (bench only).

This prices the main proposal of ``docs/performance.md`` end to end, without touching
``kitchencam/``: ``RTCRtpSender._run_rtp`` is replaced, in this process only, by a loop that per
picture builds one RTP header with aiortc (extensions and all), then per packet only patches
the sequence number and marker, calls SRTP protect and the nominated ICE pair's datagram
transport ``sendto`` directly (no ``RtpPacket`` object, no per-packet clock, no four-coroutine
await chain). NACK history (unprotected bytes, parsed back on a NACK) and the counters of RTCP
sender reports stay correct. Run: ``python bench/lean_relay.py serve`` (any ``kitchencam``
arguments).
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from pathlib import Path
from typing import Any

from aiortc import clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender, logger, random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket, wrap_rtx
from aiortc.utils import random32, uint16_add, uint32_add

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

P = "_RTCRtpSender__"  # aiortc's name-mangled private attributes


def _get(sender: RTCRtpSender, name: str) -> Any:
    return getattr(sender, P + name)


def _set(sender: RTCRtpSender, name: str, value: object) -> None:
    setattr(sender, P + name, value)


def _send_frame(
    sender: RTCRtpSender,
    codec: RTCRtpCodecParameters,
    payloads: list[bytes],
    timestamp: int,
    seq: int,
) -> int:
    """Send one picture's payloads; return the next sequence number (runs on the loop)."""
    dtls = sender.transport
    if dtls._state != State.CONNECTED:
        raise ConnectionError("DTLS not connected")
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("no nominated ICE pair")
    first = RtpPacket(payload_type=codec.payloadType, sequence_number=seq, timestamp=timestamp)
    first.ssrc = sender._ssrc
    first.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
    first.extensions.mid = _get(sender, "mid")
    header = bytearray(first.serialize(_get(sender, "rtp_header_extensions_map")))
    protect = dtls._tx_srtp.protect
    sendto = pair.protocol.transport.sendto
    addr = pair.remote_addr
    history = _get(sender, "rtp_history")
    last = len(payloads) - 1
    octets = 0
    for i, payload in enumerate(payloads):
        header[1] = codec.payloadType | (0x80 if i == last else 0)
        header[2] = seq >> 8
        header[3] = seq & 0xFF
        packet = bytes(header) + payload
        history[seq % RTP_HISTORY_SIZE] = packet
        sendto(protect(packet), addr)
        octets += len(payload)
        seq = (seq + 1) & 0xFFFF
    _set(sender, "ntp_timestamp", clock.current_ntp_time())
    _set(sender, "rtp_timestamp", timestamp)
    _set(sender, "octet_count", _get(sender, "octet_count") + octets)
    _set(sender, "packet_count", _get(sender, "packet_count") + len(payloads))
    return seq


async def lean_run_rtp(self: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
    """Replacement for ``RTCRtpSender._run_rtp``: one header per picture, direct sends."""
    _get(self, "rtp_started").set()
    seq = random_sequence_number()
    origin = random32()
    try:
        while True:
            if not self.track:
                await asyncio.sleep(0.02)
                continue
            frame = await self._next_encoded_frame(codec)
            if frame is None:
                continue
            seq = _send_frame(self, codec, frame.payloads, uint32_add(origin, frame.timestamp), seq)
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:
        logger.warning("lean RTP loop: %s", traceback.format_exc())
    track = self.track
    if track:
        track.stop()
        self.replaceTrack(None)
    _set(self, "encoder", None)
    _get(self, "rtp_exited").set()


async def lean_retransmit(self: RTCRtpSender, sequence_number: int) -> None:
    """Replacement for ``RTCRtpSender._retransmit``: the history holds bytes, parsed here."""
    raw = _get(self, "rtp_history").get(sequence_number % RTP_HISTORY_SIZE)
    if raw is None:
        return
    ext_map = _get(self, "rtp_header_extensions_map")
    packet = RtpPacket.parse(raw, ext_map)
    if packet.sequence_number != sequence_number:
        return
    rtx_payload_type = _get(self, "rtx_payload_type")
    if rtx_payload_type is not None:
        rtx_seq = _get(self, "rtx_sequence_number")
        packet = wrap_rtx(
            packet, payload_type=rtx_payload_type, sequence_number=rtx_seq, ssrc=self._rtx_ssrc
        )
        _set(self, "rtx_sequence_number", uint16_add(rtx_seq, 1))
    await self.transport._send_rtp(packet.serialize(ext_map))


def patch() -> None:
    """Install the lean loop in this process's aiortc."""
    RTCRtpSender._run_rtp = lean_run_rtp  # type: ignore[method-assign]
    RTCRtpSender._retransmit = lean_retransmit  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    from kitchencam.cli import main

    main(sys.argv[1:])
