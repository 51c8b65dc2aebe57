"""The relay benchmark's measuring side: /proc readings, the load generator's workers, and
fixed windows of relay CPU against RTP packets received."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKER_SCRIPT = Path(__file__).with_name("relay_viewers.py")


def cpu_times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(user, system) CPU-seconds of a process, all its threads included (or of one thread)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14 and 15 of stat


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU-seconds of each thread of a process, by thread id."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            times[int(task.name)] = sum(cpu_times(pid, int(task.name)))
    return times


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has been busy (not idle, not waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


def udp_receive_errors() -> int:
    """Datagrams the kernel dropped for full receive buffers, machine-wide, ever."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = next(pair for pair in itertools.pairwise(lines) if pair[0][0] == "Udp:")
    return int(values[names.index("RcvbufErrors")])


def udp_socket_drops(pid: int) -> int:
    """Datagrams the kernel dropped for full receive buffers on the open UDP sockets of one
    process (since each socket was opened)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    drops += int(fields[-1])
    return drops


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class ViewerWorker:
    """One load-generator process (``relay_viewers.py``) and its JSON-lines pipe."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.viewers = 0

    @classmethod
    async def start(cls, base: str, camera_id: str, log: Path) -> ViewerWorker:
        """Start a worker for one camera; its stderr goes to ``log``."""
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER_SCRIPT),
                base,
                camera_id,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc)

    async def call(self, **cmd: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a viewer worker died; see its log")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"viewer worker: {answer['error']}")
        return answer

    async def stop(self) -> None:
        """Close its viewers and wait for it to exit."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call(cmd="close")
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Totals:
    """Cumulative counters summed over the load generator's workers."""

    packets: int = 0
    bytes: int = 0
    gaps: int = 0
    sr_packets: int = 0
    received_at_sr: int = 0
    connected: int = 0
    cpu_s: float = 0.0

    @classmethod
    def of(cls, answers: Sequence[dict[str, Any]]) -> Totals:
        """Sum the workers' ``counts`` answers."""
        total = cls()
        for a in answers:
            total.packets += a["packets"]
            total.bytes += a["bytes"]
            total.gaps += a["gaps"]
            total.sr_packets += a["sr_packets"]
            total.received_at_sr += a["received_at_sr"]
            total.connected += a["connected"]
            total.cpu_s += a["cpu_s"]
        return total


class LoadGenerator:
    """Counting viewers spread over a few processes."""

    def __init__(self, workers: list[ViewerWorker], concurrency: int) -> None:
        self.workers = workers
        self.concurrency = concurrency
        self.post_s: list[float] = []
        self.first_keyframe_s: list[float] = []
        self.errors: list[str] = []

    @property
    def viewers(self) -> int:
        """Viewers streaming now."""
        return sum(w.viewers for w in self.workers)

    async def grow_to(self, total: int) -> None:
        """Open viewers, spread evenly, until ``total`` stream (each past its first keyframe)."""
        plan = [0] * len(self.workers)
        for i in range(total - self.viewers):
            plan[(self.viewers + i) % len(self.workers)] += 1
        answers = await asyncio.gather(
            *(
                w.call(cmd="open", n=n, concurrency=self.concurrency)
                for w, n in zip(self.workers, plan, strict=True)
                if n
            )
        )
        opened = iter(answers)
        for w, n in zip(self.workers, plan, strict=True):
            if n:
                answer = next(opened)
                w.viewers += answer["opened"]
                self.post_s += answer["post_s"]
                self.first_keyframe_s += answer["first_keyframe_s"]
                self.errors += answer["errors"]

    async def totals(self) -> Totals:
        """Counters of every worker now."""
        return Totals.of(await asyncio.gather(*(w.call(cmd="counts") for w in self.workers)))

    async def close_all(self) -> None:
        """End every viewer (DELETE and close)."""
        await asyncio.gather(*(w.call(cmd="close") for w in self.workers))
        for w in self.workers:
            w.viewers = 0


@dataclass
class Snapshot:
    """Relay CPU, machine CPU and viewer counters at one instant."""

    time: float
    user_s: float
    sys_s: float
    loop_s: float  # the main thread: the event loop
    machine_s: float
    totals: Totals

    @classmethod
    async def take(cls, pid: int, load: LoadGenerator | None) -> Snapshot:
        """Read everything now (the workers' counters first: they take a round trip)."""
        totals = await load.totals() if load else Totals()
        user, system = cpu_times(pid)
        return cls(
            time.monotonic(), user, system, sum(cpu_times(pid, pid)), machine_busy_s(), totals
        )


@dataclass
class Window:
    """One fixed measurement window of the relay under a given number of viewers."""

    seconds: float
    user_s: float
    sys_s: float
    loop_s: float
    packets: int
    bytes: int
    gaps: int
    loadgen_s: float
    machine_s: float

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Window:
        """What happened from ``a`` to ``b``."""
        return cls(
            seconds=b.time - a.time,
            user_s=b.user_s - a.user_s,
            sys_s=b.sys_s - a.sys_s,
            loop_s=b.loop_s - a.loop_s,
            packets=b.totals.packets - a.totals.packets,
            bytes=b.totals.bytes - a.totals.bytes,
            gaps=b.totals.gaps - a.totals.gaps,
            loadgen_s=b.totals.cpu_s - a.totals.cpu_s,
            machine_s=b.machine_s - a.machine_s,
        )

    @property
    def cores(self) -> float:
        """Relay CPU-seconds per second."""
        return (self.user_s + self.sys_s) / self.seconds


async def measure(pid: int, load: LoadGenerator | None, seconds: float) -> Window:
    """Relay CPU and viewer counters over ``seconds``."""
    before = await Snapshot.take(pid, load)
    await asyncio.sleep(seconds)
    return Window.between(before, await Snapshot.take(pid, load))


@dataclass
class Row:
    """The windows of one viewer count, and the relay's RSS after them."""

    viewers: int
    windows: list[Window]
    rss_mb: float
    lost: int = 0  # packets the relay's sender reports counted that no viewer received
    drops_viewers: int = 0  # datagrams dropped at the viewers' UDP sockets (open ones)

    def cores(self) -> float:
        """Median relay cores over the windows."""
        return statistics.median(w.cores for w in self.windows)

    def spread(self) -> tuple[float, float]:
        """Lowest and highest relay cores over the windows."""
        return min(w.cores for w in self.windows), max(w.cores for w in self.windows)

    def us_per_packet(self, base_cores: float) -> float | None:
        """Median relay CPU above the baseline per RTP packet received, in microseconds."""
        per = [
            (w.cores - base_cores) * w.seconds / w.packets * 1e6 for w in self.windows if w.packets
        ]
        return statistics.median(per) if per else None

    def packets_per_s(self) -> float:
        """RTP packets per second received by all viewers."""
        return sum(w.packets for w in self.windows) / sum(w.seconds for w in self.windows)

    def mean(self, attr: str) -> float:
        """Mean of a per-window CPU figure, in cores."""
        return statistics.mean(getattr(w, attr) / w.seconds for w in self.windows)


async def windows(
    pid: int, load: LoadGenerator | None, seconds: float, repeats: int
) -> list[Window]:
    """``repeats`` back-to-back windows."""
    return [await measure(pid, load, seconds) for _ in range(repeats)]
