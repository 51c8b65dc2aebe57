"""Viewer-streams per relay process at 2 Mbit/s: CPU per viewer and where full frame rate ends.

``.venv/bin/python bench/viewer_streams.py`` starts one RTSP test camera (640x360, 25 fps,
2 Mbit/s, 2 s GOP), ``kitchencam serve`` (the relay measured: viewer caps raised, the relay
role in the serve process itself, ``KITCHENCAM_RELAY_WORKERS=0``) and counting
viewers (``bench/relay_viewers.py`` workers: real aiortc peers that count RTP and never
decode), then grows the audience through ``--steps`` and measures each step over ``--window``
seconds: relay CPU (``/proc``, all threads), RTP packets each viewer received per second
against the camera's own packet rate (measured at the first step), sequence gaps, and drops
in the viewers' UDP sockets. A viewer gets full frame rate while it receives every packet the
camera sends; the ramp stops at the first step where the audience as a whole receives less
than ``--full`` (99 %) of that.

With ``--pin`` (the default on a machine with 2 or more cores) the relay runs on CPU 0 and the
load generators and camera on the other CPUs (``taskset``), so the relay's ceiling is one core
whatever else runs, and the load generators do not steal from it. Results are in
``docs/performance.md`` and ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import say
from bench.relay_load import LoadGenerator, ViewerWorker, measure, rss_mb, udp_socket_drops
from bench.relay_targets import LOOPBACK, RelayApi, wait_playable
from kitchencam.relay.webrtc import configure_host_addresses
from tests.support.camera import RtspCamera
from tests.support.serve import cli_env, free_port

START_DEADLINE_S = 30.0


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (and threads it creates later) to ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


@dataclass
class Step:
    """One audience size, measured."""

    viewers: int
    seconds: float
    relay_cores: float
    loop_cores: float
    packets_per_viewer_s: float
    gaps: int
    drops: int
    loadgen_cores: float
    machine_cores: float
    rss_mb: float
    join_errors: int


class Relay:
    """``kitchencam serve`` with raised viewer caps, optionally pinned."""

    def __init__(self, workdir: Path, cpus: set[int] | None, cap: int) -> None:
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self._log = (workdir / "relay.log").open("ab")
        env = cli_env(
            workdir / "data",
            allow_networks="127.0.0.0/8",
            webrtc_addresses=LOOPBACK,
            log_level="WARNING",
            port=str(self.port),
            max_viewers_per_camera=str(cap),
            max_viewers=str(cap),
            # the relay role in the measured process itself, not in worker processes
            relay_workers="0",
            whep_rate_per_min="0",  # every viewer comes from 127.0.0.1
        )
        prefix = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "kitchencam", "serve"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


async def wait_healthy(http: aiohttp.ClientSession, base: str) -> None:
    """Wait until ``/healthz`` answers."""
    end = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < end:
        try:
            async with http.get(base + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("relay not healthy")


async def run(args: argparse.Namespace) -> tuple[list[Step], dict[str, float]]:
    """Start camera and relay, grow the audience, measure each step."""
    configure_host_addresses([LOOPBACK])
    work = Path(tempfile.mkdtemp(prefix="kc-viewers-"))
    ncpu = os.cpu_count() or 1
    relay_cpus = {0} if args.pin and ncpu > 1 else None
    other_cpus = set(range(1, ncpu)) if relay_cpus else None
    camera = RtspCamera(
        width=args.width,
        height=args.height,
        fps=args.fps,
        bitrate_kbps=args.kbps,
        gop=args.fps * 2,
        transport="tcp",
    )
    await asyncio.to_thread(camera.start)
    if other_cpus and camera._proc is not None:
        pin(camera._proc.pid, other_cpus)
    relay = Relay(work, relay_cpus, max(args.steps) * 2)
    steps: list[Step] = []
    figures: dict[str, float] = {}
    workers: list[ViewerWorker] = []
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, relay.base)
            api = RelayApi(http, relay.base)
            await api.prepare()
            camera_id = await api.add_camera("viewers", camera.url)
            await wait_playable(http, relay.base, camera_id)
            await asyncio.sleep(args.settle)
            figures = await api.camera_figures(camera_id)
            workers = [
                await ViewerWorker.start(relay.base, camera_id, work / f"worker{i}.log")
                for i in range(args.workers)
            ]
            if other_cpus:
                for w in workers:
                    pin(w.proc.pid, other_cpus)
            load = LoadGenerator(workers, args.concurrency)
            base = await measure(relay.proc.pid, None, args.window)
            figures["baseline_cores"] = base.cores
            source_rate: float | None = None
            for n in args.steps:
                say(f"{n} viewers: connecting")
                errors_before = len(load.errors)
                await load.grow_to(n)
                await asyncio.sleep(args.settle)
                win = await measure(relay.proc.pid, load, args.window)
                viewers = load.viewers
                per_viewer = win.packets / win.seconds / max(1, viewers)
                if source_rate is None:
                    source_rate = per_viewer
                step = Step(
                    viewers,
                    win.seconds,
                    win.cores,
                    win.loop_s / win.seconds,
                    per_viewer,
                    win.gaps,
                    sum(udp_socket_drops(x.proc.pid) for x in workers),
                    win.loadgen_s / win.seconds,
                    win.machine_s / win.seconds,
                    rss_mb(relay.proc.pid),
                    len(load.errors) - errors_before,
                )
                steps.append(step)
                say(
                    f"{viewers} viewers: relay {step.relay_cores:.3f} cores, "
                    f"{per_viewer:.1f} pkt/s per viewer ({per_viewer / source_rate:.1%}), "
                    f"gaps {step.gaps}, loadgen {step.loadgen_cores:.2f}"
                )
                if viewers < n or per_viewer < source_rate * args.full:
                    break
            figures["source_pkt_s"] = source_rate or 0.0
            await load.close_all()
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
        relay.stop()
        await asyncio.to_thread(camera.stop)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return steps, figures


def report(steps: list[Step], figures: dict[str, float], args: argparse.Namespace) -> str:
    """Markdown table and the per-viewer figure."""
    base = figures.get("baseline_cores", 0.0)
    rate = figures.get("source_pkt_s", 0.0) or 1.0
    out = [
        f"Camera {args.width}x{args.height}, {args.fps} fps, {args.kbps} kbit/s asked; the relay "
        f"measured {figures.get('fps', 0):.1f} fps, {figures.get('bitrate_bps', 0) / 1e6:.2f} "
        f"Mbit/s, {rate:.0f} RTP packets/s. Relay pinned to one CPU: {args.pin}. Relay with "
        f"the camera and no viewer: {base:.3f} cores. Windows of {args.window:g} s.",
        "",
        "| viewers | relay cores | event loop | above baseline per viewer | pkt/s per viewer "
        "| share of camera's packets | gaps | socket drops | load gen cores | machine busy "
        "| RSS MB | failed joins |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        out.append(
            f"| {s.viewers} | {s.relay_cores:.3f} | {s.loop_cores:.3f} "
            f"| {(s.relay_cores - base) / max(1, s.viewers):.4f} | {s.packets_per_viewer_s:.1f} "
            f"| {s.packets_per_viewer_s / rate:.1%} | {s.gaps} | {s.drops} "
            f"| {s.loadgen_cores:.2f} | {s.machine_cores:.2f} | {s.rss_mb:.0f} "
            f"| {s.join_errors} |"
        )
    full = [s for s in steps if s.packets_per_viewer_s >= rate * args.full]
    if full:
        top = full[-1]
        per = (top.relay_cores - base) / top.viewers
        out += [
            "",
            f"Largest audience at full frame rate: {top.viewers} viewers at "
            f"{top.relay_cores:.2f} relay cores; {per:.4f} cores per viewer-stream above the "
            f"camera's own cost, so one relay process (one core at most) carries about "
            f"{(args.target - base) / per:.0f} viewer-streams at {args.target:.0%} of a core.",
        ]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--steps",
        type=lambda t: [int(x) for x in t.split(",") if x.strip()],
        default=[1, 25, 50, 100, 150, 200, 250, 300, 400],
        help="audience sizes (1,25,50,100,150,200,250,300,400)",
    )
    p.add_argument("--window", type=float, default=10.0, help="seconds per step (10)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before measuring (3)")
    p.add_argument("--workers", type=int, default=3, help="load-generator processes (3)")
    p.add_argument("--concurrency", type=int, default=4, help="joins at once per worker (4)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--kbps", type=int, default=2000)
    p.add_argument("--full", type=float, default=0.99, help="share of packets that is 'full'")
    p.add_argument("--target", type=float, default=0.7, help="target utilisation of a core")
    p.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the relay to CPU 0"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    steps, figures = asyncio.run(run(args))
    print(report(steps, figures, args))


if __name__ == "__main__":
    main()
