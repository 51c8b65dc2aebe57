"""Cameras per machine: relay CPU per camera (ingest and analysis, no viewers), one relay
process against several.

``.venv/bin/python bench/cameras_per_machine.py --cameras 16 --configs 1,2`` starts
``kitchencam redis``, ``web`` and ``checker``, one RTSP test camera (720p, 25 fps, 2 Mbit/s,
2 s GOP) whose single shared encoder serves every registered camera (each registration is its
own RTSP session, pull, keyframe analysis and figures; the camera side encodes once, so it
costs the same whatever the count), registers ``--cameras`` cameras and then, for each
configuration in turn and for ``--rounds`` interleaved rounds:

* ``1``, ``2``, ...: that many ``kitchencam relay`` processes on the same Redis;
* ``1@DIR``: the same with the code of another checkout in DIR (``git archive`` of an older
  commit), to compare two versions of the relay in one invocation.

Each configuration waits until every camera is live, settles, and reads over ``--window``
seconds the CPU of every relay process and its children (``/proc``, utime + stime), the
checker's, the camera's and the whole machine's, and how many cameras each relay pulls (its
``kitchencam_camera_live`` series in ``/metrics``; with leases each camera is pulled by one
relay, without them every relay pulls every camera). Cost per camera = relay CPU / camera
pulls. The machine is shared, so the configurations are interleaved and compared within one
invocation. Results are in ``docs/performance.md`` and ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import Fleet, Role, live_cameras, machine_s, register, say, wait_for
from bench.relay_load import cpu_times
from tests.support.camera import RtspCamera

LIVE_DEADLINE_S = 120.0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from ``/proc/*/stat``)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU-seconds of a process and its living descendants."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            total += sum(cpu_times(p))
        except OSError:
            continue
    return total


def pulled(relay: Role) -> int:
    """Cameras this relay reports live in ``/metrics``."""
    with urllib.request.urlopen(relay.base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        1
        for line in text.splitlines()
        if line.startswith("kitchencam_camera_live{") and float(line.rsplit(" ", 1)[1]) == 1.0
    )


@dataclass
class Sample:
    """One configuration measured once."""

    config: str
    seconds: float
    relay_cpu_s: float
    pulls: list[int]
    checker_cpu_s: float
    camera_cpu_s: float
    machine_cpu_s: float
    relays: int
    loop_cpu_s: float = 0.0
    """CPU of the relays' main threads (their event loops)."""

    @property
    def per_camera(self) -> float:
        """Relay cores per camera pull."""
        return self.relay_cpu_s / self.seconds / max(1, sum(self.pulls))


def start_relays(fleet: Fleet, config: str) -> list[Role]:
    """Start the relay processes of one configuration (``N@DIR``: run the code in DIR, e.g.
    an older checkout, to compare two versions in one invocation)."""
    count, _, tree = config.partition("@")
    cwd = Path(tree) if tree else None
    return [fleet.start_role("relay", f"relay-{i}", cwd=cwd) for i in range(int(count))]


def measure(
    fleet: Fleet, config: str, ids: list[str], camera_pid: int, args: argparse.Namespace
) -> Sample:
    """Run one configuration: start, wait live, settle, measure, stop."""
    assert fleet.redis is not None
    client = fleet.redis.client
    for cid in ids:
        client.delete(f"kc:live:{cid}")
    relays = start_relays(fleet, config)
    try:
        wait_for(
            f"config {config}: cameras not live",
            lambda: live_cameras(client, ids) == len(ids),
            LIVE_DEADLINE_S,
        )
        time.sleep(args.settle)  # a fixed settling time for the CPU figures, not a condition
        checker = next(r for r in fleet.roles if r.role == "checker")
        t0 = time.monotonic()
        r0 = sum(tree_cpu_s(r.pid) for r in relays)
        l0 = sum(sum(cpu_times(r.pid, r.pid)) for r in relays)
        c0, k0, m0 = checker.cpu_s(), sum(cpu_times(camera_pid)), machine_s()
        time.sleep(args.window)
        seconds = time.monotonic() - t0
        sample = Sample(
            config,
            seconds,
            sum(tree_cpu_s(r.pid) for r in relays) - r0,
            [pulled(r) for r in relays],
            checker.cpu_s() - c0,
            sum(cpu_times(camera_pid)) - k0,
            machine_s() - m0,
            len(relays),
            sum(sum(cpu_times(r.pid, r.pid)) for r in relays) - l0,
        )
        say(
            f"config {config}: relay {sample.relay_cpu_s / seconds:.3f} cores, pulls "
            f"{sample.pulls}, {sample.per_camera:.4f} cores per camera"
        )
        return sample
    finally:
        for relay in relays:
            fleet.stop_role(relay)


def run(args: argparse.Namespace) -> tuple[list[Sample], dict[str, Any]]:
    """Start the fleet, measure every configuration ``args.rounds`` times, stop."""
    workdir = Path(tempfile.mkdtemp(prefix="kc-cameras-"))
    fleet = Fleet(workdir)
    try:
        say(f"work directory {workdir}")
        fleet.start_redis()
        fleet.settings["sample_interval_s"] = str(args.sample_interval)
        web = fleet.start_role("web", "web")
        fleet.start_role("checker", "checker")
        camera = RtspCamera(
            width=args.width,
            height=args.height,
            fps=args.fps,
            bitrate_kbps=args.kbps,
            gop=args.fps * 2,
            transport="tcp",
        )
        url = fleet.start_camera(camera)
        assert camera._proc is not None
        camera_pid = camera._proc.pid
        ids = asyncio.run(register(web.base, url, args.cameras))
        samples = []
        for round_ in range(args.rounds):
            for config in args.configs:
                say(f"round {round_ + 1}: config {config}")
                samples.append(measure(fleet, config, ids, camera_pid, args))
        info = {"cameras": len(ids), "camera": f"{args.width}x{args.height}"}
        return samples, info
    finally:
        fleet.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(samples: list[Sample], info: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table: per configuration, median over rounds."""
    out = [
        f"{info['cameras']} cameras registered ({info['camera']}, {args.fps} fps, "
        f"{args.kbps} kbit/s, 2 s GOP, analysis every {args.sample_interval:g} s), windows of "
        f"{args.window:g} s, {args.rounds} interleaved rounds; machine {os.cpu_count()} cores.",
        "",
        "| relays | camera pulls per relay | relay cores (rounds) | **cores per camera** "
        "| x first config | of which event loops | checker cores | camera process cores "
        "| machine busy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first: float | None = None
    for config in args.configs:
        mine = [s for s in samples if s.config == config]
        per = statistics.median(s.per_camera for s in mine)
        first = per if first is None else first
        label = config
        out.append(
            f"| {label} | {', '.join('/'.join(map(str, s.pulls)) for s in mine)} "
            f"| {', '.join(f'{s.relay_cpu_s / s.seconds:.3f}' for s in mine)} "
            f"| **{per:.4f}** | {per / first:.2f} "
            f"| {statistics.median(s.loop_cpu_s / s.relay_cpu_s for s in mine):.0%} "
            f"| {statistics.median(s.checker_cpu_s / s.seconds for s in mine):.4f} "
            f"| {statistics.median(s.camera_cpu_s / s.seconds for s in mine):.3f} "
            f"| {statistics.median(s.machine_cpu_s / s.seconds for s in mine):.2f} |"
        )
    out.append("")
    for config in args.configs:
        per = statistics.median(s.per_camera for s in samples if s.config == config)
        out.append(
            f"Config {config}: at {args.target:.0%} of a core, {args.target / per:.0f} cameras "
            f"per core ({per * 1000:.1f} millicores per camera)."
        )
    out.append(json.dumps([s.__dict__ for s in samples]))
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=16, help="cameras registered (16)")
    p.add_argument(
        "--configs",
        type=lambda t: [c.strip() for c in t.split(",") if c.strip()],
        default=["1", "2"],
        help="relay processes per configuration; N@DIR: code from DIR (1,2)",
    )
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    p.add_argument("--window", type=float, default=20.0, help="seconds per window (20)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after all live (5)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--kbps", type=int, default=2000)
    p.add_argument("--sample-interval", type=float, default=2.0, help="analysis interval s (2)")
    p.add_argument("--target", type=float, default=0.7, help="target utilisation of a core")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    samples, info = run(args)
    print(report(samples, info, args))


if __name__ == "__main__":
    main()
