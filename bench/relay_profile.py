"""Where the relay's event loop spends its CPU, from py-spy's raw stacks (a dev tool:
``.venv/bin/pip install py-spy``; not a dependency)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.relay_load import LoadGenerator, Snapshot, Window

PY_SPY = Path(sys.executable).with_name("py-spy")
PROFILE_RATE_HZ = 200
DUMP_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "(.*)"$', re.MULTILINE)

# (bucket, path fragment, function names or None): the first rule matching a frame, walking
# from the innermost frame outwards, names an event-loop sample's bucket. Function names are
# compared without their class (py-spy prints ``Class.method``).
SEND = "aioice/aiortc send path (Connection.sendto, send_data, _send)"
PROFILE_RULES: list[tuple[str, str, frozenset[str] | None]] = [
    ("SRTP protect (libsrtp via cffi)", "pylibsrtp", None),
    ("UDP sendto (syscall, kernel loopback)", "asyncio/selector_events.py", frozenset({"sendto"})),
    ("DTLS transport _send_rtp", "aiortc/rtp.py", frozenset({"is_rtcp"})),
    ("RtpPacket build + serialize", "aiortc/rtp.py", None),
    ("abs-send-time clock (datetime -> NTP)", "aiortc/clock.py", None),
    ("packetise (once per camera)", "aiortc/codecs/h264.py", None),
    (
        SEND,
        "aioice/ice.py",
        frozenset({"send", "sendto", "send_data", "remote_addr", "local_candidate"}),
    ),
    (SEND, "aiortc/rtcicetransport.py", frozenset({"_send"})),
    ("aioice receive, STUN consent", "aioice/", None),
    (
        "DTLS transport _send_rtp",
        "aiortc/rtcdtlstransport.py",
        frozenset({"_send_rtp", "transport"}),
    ),
    ("DTLS receive, RTCP in", "aiortc/rtcdtlstransport.py", None),
    (
        "aiortc sender loop (_run_rtp self)",
        "aiortc/rtcrtpsender.py",
        frozenset({"_run_rtp", "_next_encoded_frame"}),
    ),
    ("aiortc RTCP out (SR, SDES)", "aiortc/rtcrtpsender.py", None),
    ("our code: SharedPacker.pack, track.recv, ViewerQueue", "kitchencam/relay/webrtc.py", None),
    ("our code: SharedPacker.pack, track.recv, ViewerQueue", "kitchencam/relay/stream.py", None),
    ("our code: other relay (ingest hand-off)", "kitchencam/relay/", None),
    ("HTTP, Redis, figures, checker", "aiohttp/", None),
    ("HTTP, Redis, figures, checker", "redis/", None),
    ("HTTP, Redis, figures, checker", "kitchencam/", None),
    ("other aiortc", "aiortc/", None),
    ("event loop: epoll_wait (idle or not)", "selectors.py", None),
    ("event loop, task switches, futures (awaits)", "asyncio/", None),
]
PER_PACKET_BUCKETS = {
    "SRTP protect (libsrtp via cffi)",
    "UDP sendto (syscall, kernel loopback)",
    "RtpPacket build + serialize",
    "abs-send-time clock (datetime -> NTP)",
    SEND,
    "DTLS transport _send_rtp",
    "aiortc sender loop (_run_rtp self)",
    "our code: SharedPacker.pack, track.recv, ViewerQueue",
    "event loop, task switches, futures (awaits)",
}
MAIN_ROOT = "_run_module_as_main"


def _frame(text: str) -> tuple[str, str]:
    """(function without class, file) of one py-spy frame ``Class.func (path/file.py:123)``."""
    func, _, where = text.partition(" (")
    return func.rsplit(".", 1)[-1], where.rsplit(":", 1)[0]


def classify(stack: list[str]) -> str | None:
    """The bucket of one sampled event-loop stack (outermost frame first); ``None`` for
    samples of other threads."""
    frames = [_frame(f) for f in stack]
    if not frames or frames[0][0] != MAIN_ROOT:
        return None
    for func, path in reversed(frames):
        for bucket, fragment, names in PROFILE_RULES:
            if fragment in path and (names is None or func in names):
                return bucket
    return "other"


def summarize_profile(raw: Path) -> Counter[str]:
    """Samples per bucket of a py-spy ``--format raw`` file."""
    buckets: Counter[str] = Counter()
    if not raw.exists():
        return buckets
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            buckets[classify(stack.split(";")) or "(other threads)"] += int(count)
    return buckets


@dataclass
class Profile:
    """A py-spy sample of the relay at some number of viewers."""

    viewers: int
    window: Window
    buckets: Counter[str]
    path: Path


async def profile(pid: int, load: LoadGenerator, seconds: float, out: Path) -> Profile:
    """Sample the relay with py-spy while the viewers stream."""
    before = await Snapshot.take(pid, load)
    spy = await asyncio.create_subprocess_exec(
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(PROFILE_RATE_HZ),
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await spy.wait()
    window = Window.between(before, await Snapshot.take(pid, load))
    buckets = await asyncio.to_thread(summarize_profile, out)
    return Profile(load.viewers, window, buckets, out)


def profile_table(prof: Profile, base: Window) -> list[str]:
    """Where the event loop's CPU went per RTP packet, from a py-spy sample."""
    w = prof.window
    buckets = Counter(prof.buckets)
    thread_samples = buckets.pop("(other threads)", 0)
    loop_samples = sum(buckets.values()) or 1
    packets = max(w.packets, 1)
    base_loop = base.loop_s / base.seconds * w.seconds
    base_all = (base.user_s + base.sys_s) / base.seconds * w.seconds
    cpu = w.user_s + w.sys_s
    lines = [
        f"py-spy, {prof.viewers} viewers, {w.seconds:.0f} s at {PROFILE_RATE_HZ} Hz, "
        f"{w.packets} RTP packets: relay {cpu / packets * 1e6:.1f} µs/pkt all in, "
        f"{(cpu - base_all) / packets * 1e6:.1f} above baseline; event-loop thread "
        f"{w.loop_s / packets * 1e6:.1f} µs/pkt ({(w.loop_s - base_loop) / packets * 1e6:.1f} "
        f"above its baseline), other threads {(cpu - w.loop_s) / packets * 1e6:.1f} µs/pkt. "
        f"Event-loop samples: {loop_samples} ({loop_samples / PROFILE_RATE_HZ / w.loop_s:.0%} "
        f"of its CPU-s: py-spy also counts runnable-but-waiting time); other threads: "
        f"{thread_samples}. Raw stacks: {prof.path}.",
        "",
        "| event loop: where | share | µs per RTP packet |",
        "|---|---:|---:|",
    ]
    per_packet = 0.0
    for bucket, samples in buckets.most_common():
        us = samples / loop_samples * w.loop_s / packets * 1e6
        mark = "" if bucket in PER_PACKET_BUCKETS else " (not per packet)"
        per_packet += us if bucket in PER_PACKET_BUCKETS else 0.0
        lines.append(f"| {bucket}{mark} | {samples / loop_samples:.1%} | {us:.1f} |")
    lines.append(f"| **per-packet path (sum of the unmarked rows)** | | **{per_packet:.1f}** |")
    return lines


async def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id, from ``py-spy dump`` (empty without py-spy)."""
    if not PY_SPY.exists():
        return {}
    spy = await asyncio.create_subprocess_exec(
        str(PY_SPY),
        "dump",
        "--pid",
        str(pid),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await spy.communicate()
    return {int(tid): name for tid, name in DUMP_THREAD.findall(out.decode(errors="replace"))}


def thread_groups(
    pid: int, before: dict[int, float], after: dict[int, float], names: dict[int, str]
) -> dict[str, float]:
    """CPU-seconds per kind of thread between two ``thread_cpu`` readings."""
    groups: dict[str, float] = {}
    for tid, cpu in after.items():
        name = names.get(tid, "")
        if tid == pid:
            kind = "event loop (main thread)"
        elif name.startswith("ingest-"):
            kind = "ingest thread (PyAV demux)"
        elif name.startswith("analysis"):
            kind = "compliance analysis threads"
        else:
            kind = "other threads"
        groups[kind] = groups.get(kind, 0.0) + cpu - before.get(tid, 0.0)
    return groups
