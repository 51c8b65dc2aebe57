"""Cheap WHEP viewers for the relay benchmark: real aiortc peers that count RTP, never decode.

A ``CountingViewer`` is a genuine aiortc ``RTCPeerConnection`` (ICE, DTLS, SRTP, RTCP) whose
DTLS transport hands decrypted RTP to a counter instead of aiortc's parser, jitter buffer and
decoder thread: per packet it reads the sequence number and, until the first keyframe, the
H.264 NAL type, so the load generator stays far cheaper than the relay it measures. RTCP
still goes through aiortc, and the relay's sender reports (SR) are kept: their packet counts
are what the relay says it sent, which gives the loss between relay and viewer.

Run as a worker process (``python bench/relay_viewers.py BASE CAMERA_ID``), it reads one JSON
command per line on stdin and answers one JSON line on stdout:
``{"cmd": "open", "n": 25, "concurrency": 5}``, ``{"cmd": "counts"}``, ``{"cmd": "close"}``,
``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kitchencam.relay.webrtc import configure_host_addresses

LOOPBACK = "127.0.0.1"
KEYFRAME_DEADLINE_S = 20.0
RTP_HEADER_BYTES = 12
NAL_IDR, NAL_SPS, NAL_STAP_A, NAL_FU_A = 5, 7, 24, 28
KEYFRAME_NALS = frozenset({NAL_IDR, NAL_SPS})
MAX_COUNTED_GAP = 1000  # a larger sequence jump is a new stream, not loss


def starts_keyframe(rtp: bytes) -> bool:
    """Whether a decrypted H.264 RTP packet begins a keyframe (SPS or IDR first)."""
    if len(rtp) <= RTP_HEADER_BYTES:
        return False
    offset = RTP_HEADER_BYTES + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
        if len(rtp) < offset + 4:
            return False
        offset += 4 + 4 * int.from_bytes(rtp[offset + 2 : offset + 4], "big")
    if len(rtp) < offset + 4:
        return False
    nal = rtp[offset] & 0x1F
    if nal == NAL_STAP_A:  # one byte of STAP-A header, two of NAL size, then the first NAL
        return rtp[offset + 3] & 0x1F in KEYFRAME_NALS
    if nal == NAL_FU_A:
        fu_header = rtp[offset + 1]
        return bool(fu_header & 0x80) and fu_header & 0x1F in KEYFRAME_NALS
    return nal in KEYFRAME_NALS


class CountingViewer:
    """One WHEP viewer that counts RTP packets and bytes from the first keyframe on."""

    def __init__(self, base: str, camera_id: str) -> None:
        self.base = base
        self.camera_id = camera_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.post_s: float | None = None
        self.first_keyframe_s: float | None = None
        self.packets = 0  # from the first keyframe on
        self.bytes = 0
        self.all_packets = 0  # every RTP packet, to compare with the relay's SR counts
        self.gaps = 0  # packets missing by sequence number
        self.sr_packets = 0  # the relay's packet count in its last sender report
        self.received_at_sr = 0  # our all_packets when that report arrived
        self._seq: int | None = None
        self._started = 0.0
        self._keyframe = asyncio.Event()

    async def open(self, http: aiohttp.ClientSession) -> None:
        """Offer, POST, apply the answer; the media then flows to the counter."""
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        self._hook(transceiver)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._started = time.perf_counter()
        async with http.post(
            f"{self.base}/whep/{self.camera_id}",
            data=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            answer = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHEP POST answered {resp.status}: {answer[:200]}")
            self.location = resp.headers["Location"]
        self.post_s = time.perf_counter() - self._started
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        self._hook(transceiver)  # in case the answer swapped the transport (bundling)

    async def wait_keyframe(self, deadline_s: float = KEYFRAME_DEADLINE_S) -> None:
        """Wait until the first keyframe packet has arrived."""
        await asyncio.wait_for(self._keyframe.wait(), deadline_s)

    def _hook(self, transceiver: RTCRtpTransceiver) -> None:
        """Route decrypted RTP to ``_on_rtp`` and watch the relay's sender reports."""
        receiver = transceiver.receiver
        receiver.transport._handle_rtp_data = self._on_rtp  # type: ignore[method-assign]
        original = receiver._handle_rtcp_packet
        if getattr(original, "_counting", False):
            return

        async def on_rtcp(packet: AnyRtcpPacket) -> None:
            if isinstance(packet, RtcpSrPacket):
                self.sr_packets = packet.sender_info.packet_count
                self.received_at_sr = self.all_packets
            await original(packet)

        on_rtcp._counting = True  # type: ignore[attr-defined]
        receiver._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign]

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        """Count one decrypted RTP packet (replaces aiortc's parse, jitter buffer, decoder)."""
        self.all_packets += 1
        seq = (data[2] << 8) | data[3]
        if self._seq is not None:
            gap = (seq - self._seq - 1) & 0xFFFF
            if 0 < gap < MAX_COUNTED_GAP:
                self.gaps += gap
        self._seq = seq
        if self.first_keyframe_s is None:
            if not starts_keyframe(data):
                return
            self.first_keyframe_s = time.perf_counter() - self._started
            self._keyframe.set()
        self.packets += 1
        self.bytes += len(data)

    async def close(self, http: aiohttp.ClientSession) -> None:
        """DELETE the session (if any) and close the peer connection."""
        if self.location is not None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.delete(self.base + self.location):
                    pass
        await self.pc.close()


class Worker:
    """A load-generator process: many counting viewers of one camera, driven over stdin."""

    def __init__(self, base: str, camera_id: str) -> None:
        self.base = base
        self.camera_id = camera_id
        self.viewers: list[CountingViewer] = []

    async def handle(self, http: aiohttp.ClientSession, cmd: dict[str, Any]) -> dict[str, Any]:
        """Run one command and return its answer."""
        name = cmd["cmd"]
        if name == "open":
            return await self.open(http, int(cmd["n"]), int(cmd.get("concurrency", 4)))
        if name == "counts":
            return self.counts()
        if name == "close":
            closing, self.viewers = self.viewers, []
            await asyncio.gather(*(v.close(http) for v in closing), return_exceptions=True)
            return {"closed": len(closing)}
        raise ValueError(f"unknown command {name!r}")

    async def open(self, http: aiohttp.ClientSession, n: int, concurrency: int) -> dict[str, Any]:
        """Open ``n`` viewers, at most ``concurrency`` at a time, each until its keyframe."""
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        opened: list[CountingViewer] = []

        async def one() -> None:
            viewer = CountingViewer(self.base, self.camera_id)
            async with gate:
                try:
                    await viewer.open(http)
                    await viewer.wait_keyframe()
                except Exception as err:
                    errors.append(f"{type(err).__name__}: {err}"[:200])
                    await viewer.close(http)
                    return
            opened.append(viewer)

        await asyncio.gather(*(one() for _ in range(n)))
        self.viewers += opened
        return {
            "opened": len(opened),
            "errors": errors,
            "post_s": [v.post_s for v in opened],
            "first_keyframe_s": [v.first_keyframe_s for v in opened],
        }

    def counts(self) -> dict[str, Any]:
        """Cumulative totals over this worker's viewers, and its own CPU time."""
        times = os.times()
        vs = self.viewers
        return {
            "viewers": len(vs),
            "connected": sum(v.pc.connectionState == "connected" for v in vs),
            "packets": sum(v.packets for v in vs),
            "bytes": sum(v.bytes for v in vs),
            "gaps": sum(v.gaps for v in vs),
            "sr_packets": sum(v.sr_packets for v in vs),
            "received_at_sr": sum(v.received_at_sr for v in vs),
            "cpu_s": times.user + times.system,
            "monotonic": time.monotonic(),
        }


async def serve_stdin(base: str, camera_id: str) -> None:
    """Answer commands from stdin until ``quit`` or end of input."""
    configure_host_addresses([LOOPBACK])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker(base, camera_id)
    async with aiohttp.ClientSession() as http:
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "quit":
                    break
                try:
                    answer = await worker.handle(http, cmd)
                except Exception as err:
                    answer = {"error": f"{type(err).__name__}: {err}"}
                sys.stdout.write(json.dumps(answer) + "\n")
                sys.stdout.flush()
        finally:
            await worker.handle(http, {"cmd": "close"})


if __name__ == "__main__":
    asyncio.run(serve_stdin(sys.argv[1], sys.argv[2]))
