"""Where a relayed RTP packet's CPU goes, stage by stage, and what a leaner send loop costs.

``.venv/bin/python bench/relay_packet_path.py`` times, with real aiortc, pylibsrtp and asyncio
objects and CPU time (not wall time), each step aiortc's ``RTCRtpSender._run_rtp`` takes per
packet in our relay (build the ``RtpPacket``, abs-send-time, serialise, SRTP, the
aiortc/aioice await chain, ``sendto`` on loopback), the per-frame wake-up of a viewer's task,
stock aiortc's per-viewer packetisation (what ``SharedPacker`` saves), and prototypes of a
lean per-viewer loop (prebuilt header, one SRTP call, the datagram transport's ``sendto``), with
and without UDP GSO. A receiver process drains the datagrams so the kernel path is the real
loopback one. Nothing here touches ``kitchencam``: it prices proposals for the relay's lead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

FRAME_BYTES = 10_000  # 2 Mbit/s at 25 fps: about 10 kB per picture
MID_EXT, ABS_SEND_TIME_EXT = 1, 2
UDP_SEGMENT = 103  # linux/udp.h: the GSO segment size socket option (not in Python's socket)
SRTP_PROFILES = {
    "AEAD_AES_256_GCM (aiortc's first choice)": Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AES128_CM_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
}
KEY_BYTES = {
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
}
DRAIN = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1<<22)\n"
    "s.bind(('127.0.0.1',0));print(s.getsockname()[1],flush=True)\n"
    "while True: s.recv(65536)\n"
)


def frame_payloads() -> list[bytes]:
    """RTP payloads of one typical picture, packetised the way the relay does."""
    annex_b = b"\x00\x00\x00\x01\x41" + os.urandom(FRAME_BYTES)
    return H264Encoder._packetize(H264Encoder._split_bitstream(annex_b))


def extensions_map() -> HeaderExtensionsMap:
    """The header extensions aiortc negotiates for video with aiortc/Chromium viewers."""
    ext = HeaderExtensionsMap()
    ext.configure(
        RTCRtpSendParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=MID_EXT, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=ABS_SEND_TIME_EXT,
                    uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                ),
            ]
        )
    )
    return ext


def srtp(profile: int) -> Session:
    """An outbound SRTP session with a random key."""
    return Session(
        Policy(
            key=os.urandom(KEY_BYTES[profile]),
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile,
        )
    )


def cpu_us(run: Callable[[int], object], count: int, repeats: int) -> float:
    """Median CPU microseconds per item of ``run(count)`` over ``repeats`` runs."""
    results = []
    for _ in range(repeats):
        start = time.process_time()
        run(count)
        results.append((time.process_time() - start) / count * 1e6)
    return statistics.median(results)


async def acpu_us(
    run: Callable[[int], Coroutine[Any, Any, object]], count: int, repeats: int
) -> float:
    """``cpu_us`` for a coroutine function."""
    results = []
    for _ in range(repeats):
        start = time.process_time()
        await run(count)
        results.append((time.process_time() - start) / count * 1e6)
    return statistics.median(results)


class Stock:
    """The per-packet body of aiortc's ``RTCRtpSender._run_rtp``, stage by stage."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.payloads = payloads
        self.ext = extensions_map()
        self.history: dict[int, RtpPacket] = {}
        self.srtp = srtp(Policy.SRTP_PROFILE_AEAD_AES_256_GCM)

    def packet(self, seq: int) -> RtpPacket:
        """Build one packet with its header extensions, as aiortc does."""
        packet = RtpPacket(payload_type=102, sequence_number=seq & 0xFFFF, timestamp=90_000)
        packet.ssrc = 0x12345678
        packet.payload = self.payloads[seq % len(self.payloads)]
        packet.marker = 0
        packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
        packet.extensions.mid = "0"
        self.history[packet.sequence_number % RTP_HISTORY_SIZE] = packet
        return packet

    def build(self, n: int) -> None:
        """Stage: RtpPacket, extensions (abs-send-time included), NACK history."""
        for i in range(n):
            self.packet(i)

    def abs_send_time(self, n: int) -> None:
        """Stage: aiortc's clock for abs-send-time (datetime, then NTP)."""
        for _ in range(n):
            (clock.current_ntp_time() >> 14) & 0x00FFFFFF

    def serialize(self, n: int) -> None:
        """Stage: ``RtpPacket.serialize`` with the extension map."""
        packets = [self.packet(i) for i in range(len(self.payloads))]
        for i in range(n):
            packets[i % len(packets)].serialize(self.ext)


def protect_us(
    session: Session, header: bytes, payloads: list[bytes], count: int, repeats: int
) -> float:
    """Median CPU µs of SRTP protect per packet (libsrtp refuses to protect a sequence
    number twice, so each run gets fresh, increasing ones, made before the clock starts)."""
    results = []
    template = bytearray(header)
    seq = 0
    for _ in range(repeats):
        batch = []
        for _ in range(count):
            struct.pack_into("!H", template, 2, seq & 0xFFFF)
            batch.append(bytes(template) + payloads[seq % len(payloads)])
            seq += 1
        start = time.process_time()
        for packet in batch:
            session.protect(packet)
        results.append((time.process_time() - start) / count * 1e6)
    return statistics.median(results)


class AwaitChain:
    """aiortc/aioice's send path: four coroutines between the sender and ``sendto``."""

    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str, int]) -> None:
        self.transport = transport
        self.addr = addr
        self.connected = True

    async def send_rtp(self, data: bytes) -> None:
        """``RTCDtlsTransport._send_rtp`` without the SRTP call."""
        if not self.connected:
            raise ConnectionError
        await self.ice_send(data)

    async def ice_send(self, data: bytes) -> None:
        """``RTCIceTransport._send`` and ``Connection.send``."""
        await self.connection_sendto(data, 1)

    async def connection_sendto(self, data: bytes, component: int) -> None:
        """``Connection.sendto``: look up the nominated pair."""
        await self.send_data(data, self.addr)

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        """``StunProtocol.send_data``."""
        self.transport.sendto(data, addr)


class LeanViewer:
    """A prototype per-viewer send loop: prebuilt header, one SRTP call, direct ``sendto``.

    Keeps what RTCP and NACK need: a 128-slot history of unprotected packets by sequence
    number, packet and octet counts, and the last RTP timestamp with its NTP time.
    """

    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str, int]) -> None:
        self.transport = transport
        self.addr = addr
        self.srtp = srtp(Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
        self.seq = 1000
        self.ssrc = 0x12345678
        self.payload_type = 102
        # RFC 8285 one-byte extensions: mid "0" (id 1, 1 byte), abs-send-time (id 2, 3 bytes),
        # padded to 32 bits: 0xBEDE, length 2 words, then 8 bytes.
        self.header = bytearray(12 + 12)
        self.header[0] = 0x90  # version 2, extension bit
        struct.pack_into("!HH", self.header, 12, 0xBEDE, 2)
        self.header[16:18] = bytes([(MID_EXT << 4) | 0, ord("0")])
        self.header[18] = (ABS_SEND_TIME_EXT << 4) | 2
        self.history: list[bytes | None] = [None] * RTP_HISTORY_SIZE
        self.packets = 0
        self.octets = 0
        self.rtp_timestamp = 0
        self.ntp_time = 0

    def send_frame(self, payloads: list[bytes], timestamp: int) -> None:
        """Send one picture's payloads (one call per viewer and picture, no awaits)."""
        header = self.header
        now = time.time()
        ntp = int((now + 2_208_988_800) * (1 << 32))  # seconds since 1900, 32.32 fixed point
        header[19:22] = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        protect, sendto, addr, history = (
            self.srtp.protect,
            self.transport.sendto,
            self.addr,
            self.history,
        )
        last = len(payloads) - 1
        seq = self.seq
        for i, payload in enumerate(payloads):
            header[1] = self.payload_type | (0x80 if i == last else 0)
            struct.pack_into("!HII", header, 2, seq, timestamp, self.ssrc)
            packet = bytes(header) + payload
            history[seq % RTP_HISTORY_SIZE] = packet
            sendto(protect(packet), addr)
            self.octets += len(payload)
            seq = (seq + 1) & 0xFFFF
        self.seq = seq
        self.packets += len(payloads)
        self.rtp_timestamp, self.ntp_time = timestamp, ntp


class GsoSender:
    """A prototype: one picture as equal-sized SRTP packets in one ``sendmsg`` (UDP GSO)."""

    def __init__(self, addr: tuple[str, int], header: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = addr
        self.srtp = srtp(Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
        self.header = bytearray(header)
        self.seq = 0

    def frame(self, payload_bytes: int, count: int) -> None:
        """SRTP-protect ``count`` packets of equal size and send them with one syscall."""
        packets = []
        body = bytes(payload_bytes)
        for _ in range(count):
            struct.pack_into("!H", self.header, 2, self.seq & 0xFFFF)
            self.seq += 1
            packets.append(self.srtp.protect(bytes(self.header) + body))
        segment = struct.pack("=H", len(packets[0]))
        self.sock.sendmsg(
            [b"".join(packets)], [(socket.SOL_UDP, UDP_SEGMENT, segment)], 0, self.addr
        )

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


async def wakeups_us(viewers: int, frames: int) -> float:
    """CPU per (picture x viewer) to wake a viewer's task with an asyncio.Event, as the
    relay's ViewerQueue does, with nothing sent."""
    events = [asyncio.Event() for _ in range(viewers)]
    done = 0

    async def viewer(event: asyncio.Event) -> None:
        nonlocal done
        while True:
            await event.wait()
            event.clear()
            done += 1

    tasks = [asyncio.create_task(viewer(e)) for e in events]
    await asyncio.sleep(0)
    start = time.process_time()
    for _ in range(frames):
        for e in events:
            e.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    spent = time.process_time() - start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return spent / max(done, 1) * 1e6


async def measure(count: int, repeats: int, addr: tuple[str, int]) -> list[tuple[str, float, str]]:
    """Every stage and prototype, in µs per RTP packet (or per stated unit)."""
    payloads = frame_payloads()
    per_frame = len(payloads)
    stock = Stock(payloads)
    rows: list[tuple[str, float, str]] = []
    build = cpu_us(stock.build, count, repeats)
    ntp = cpu_us(stock.abs_send_time, count, repeats)
    rows.append(("RtpPacket + extensions + NACK history (w/o clock)", build - ntp, "pkt"))
    rows.append(("abs-send-time via aiortc clock (datetime -> NTP)", ntp, "pkt"))
    rows.append(("RtpPacket.serialize", cpu_us(stock.serialize, count, repeats), "pkt"))
    first = stock.packet(0).serialize(stock.ext)
    header = first[: len(first) - len(payloads[0])]
    for name, profile in SRTP_PROFILES.items():
        rows.append(
            (
                f"SRTP protect, {name}",
                protect_us(srtp(profile), header, payloads, count, repeats),
                "pkt",
            )
        )

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    sock: socket.socket = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    wire = [stock.srtp.protect(stock.packet(i).serialize(stock.ext)) for i in range(per_frame)]

    async def chain(n: int) -> None:
        path = AwaitChain(transport, addr)
        for i in range(n):
            await path.send_rtp(wire[i % per_frame])
            if i % 64 == 63:
                await asyncio.sleep(0)  # let the loop breathe, as between frames

    async def direct(n: int) -> None:
        for i in range(n):
            transport.sendto(wire[i % per_frame], addr)
            if i % 64 == 63:
                await asyncio.sleep(0)

    send_direct = await acpu_us(direct, count, repeats)
    rows.append(("sendto via asyncio transport (syscall, loopback)", send_direct, "pkt"))
    rows.append(
        (
            "aiortc/aioice await chain (4 coroutines)",
            await acpu_us(chain, count, repeats) - send_direct,
            "pkt",
        )
    )
    wake = await wakeups_us(50, max(count // 50, 200))
    rows.append((f"viewer task wake-up per picture / {per_frame} pkts", wake / per_frame, "pkt"))
    packer = H264Encoder()
    annex_b = b"\x00\x00\x00\x01\x41" + os.urandom(FRAME_BYTES)
    repack = cpu_us(
        lambda n: [packer._packetize(packer._split_bitstream(annex_b)) for _ in range(n)],
        max(count // per_frame, 100),
        repeats,
    )
    rows.append(
        (
            f"stock per-viewer packetise (saved by SharedPacker) / {per_frame} pkts",
            repack / per_frame,
            "pkt",
        )
    )

    async def lean(n: int) -> None:
        viewer = LeanViewer(transport, addr)
        for f in range(n // per_frame):
            viewer.send_frame(payloads, f * 3600)
            await asyncio.sleep(0)

    rows.append(
        (
            "PROTOTYPE lean send_frame: header + SRTP + sendto, all in",
            await acpu_us(lean, count, repeats),
            "pkt",
        )
    )
    gso = GsoSender(addr, header)
    try:
        rows.append(
            (
                "PROTOTYPE GSO: 8 equal packets, SRTP each, one sendmsg per picture",
                cpu_us(lambda n: [gso.frame(1200, 8) for _ in range(n // 8)], count, repeats),
                "pkt",
            )
        )
    except OSError as err:
        rows.append((f"PROTOTYPE GSO unavailable ({err})", float("nan"), "pkt"))
    finally:
        gso.close()
    transport.close()
    return rows


def main() -> None:
    """Print the stage table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20_000, help="packets per timing run")
    p.add_argument("--repeats", type=int, default=5, help="timing runs per stage (median)")
    args = p.parse_args()
    drain = subprocess.Popen([sys.executable, "-c", DRAIN], stdout=subprocess.PIPE, text=True)
    try:
        assert drain.stdout is not None
        addr = ("127.0.0.1", int(drain.stdout.readline()))
        rows = asyncio.run(measure(args.count, args.repeats, addr))
    finally:
        drain.kill()
        drain.wait()
    print("| stage | µs per RTP packet (CPU, median) |")
    print("|---|---:|")
    for name, us, _ in rows:
        print(f"| {name} | {us:.2f} |")


if __name__ == "__main__":
    main()
