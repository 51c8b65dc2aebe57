"""Relay benchmark: one command, one table (issue 3's Benchmark section).

``.venv/bin/python bench/relay.py`` starts a real RTSP test camera (720p, 25 fps, 2 Mbit/s),
runs ``kitchencam serve`` as a subprocess, registers the camera through the API and measures,
all on loopback:

1. relay CPU with no camera, with the camera and no viewer (the baseline), and with 1, 10, 50
   viewers: CPU-seconds of the ``kitchencam serve`` process from ``/proc/PID/stat`` over fixed
   windows, per viewer and per RTP packet above the baseline;
2. relay RSS per viewer (``VmRSS``, most viewers against none);
3. WHEP POST latency while the most viewers stream;
4. first-frame time of late joiners (decoding aiortc clients) at several GOP lengths.

It also reports packets lost between relay and viewers, the relay's RSS over leave-and-rejoin
cycles (``--churn``) and, with py-spy installed, how the baseline's CPU splits over threads.

Viewers of the CPU part are ``bench/relay_viewers.py`` worker processes whose peers count RTP
packets and never decode. ``--profile-at 10,50`` also samples the relay with py-spy (a dev tool:
``.venv/bin/pip install py-spy``) and prints where its event loop's CPU goes per RTP packet.
``--variant stock`` measures aiortc's own pass-through (``bench/stock_relay.py``) the same way,
``--variant lean`` the product with a prototype send loop (``bench/lean_relay.py``).
Progress goes to stderr, the Markdown tables to stdout; results are in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.relay_load import (
    LoadGenerator,
    Row,
    ViewerWorker,
    Window,
    percentile,
    rss_mb,
    thread_cpu,
    udp_receive_errors,
    udp_socket_drops,
    windows,
)
from bench.relay_profile import (
    PY_SPY,
    Profile,
    profile,
    profile_table,
    thread_groups,
    thread_names,
)
from bench.relay_targets import (
    BITRATE_KBPS,
    FPS,
    HEIGHT,
    LOOPBACK,
    VARIANTS,
    WIDTH,
    CameraApi,
    RelayProcess,
    camera,
    camera_api,
    relay_process,
)
from bench.relay_viewers import CountingViewer
from kitchencam.relay.webrtc import configure_host_addresses
from tests.support.whep_client import DecodeErrorCounter, WhepViewer

FIRST_FRAME_DEADLINE_S = 15.0


async def probe_posts(
    http: aiohttp.ClientSession, base: str, camera_id: str, count: int
) -> tuple[list[float], list[float], list[str]]:
    """WHEP POST latencies (and times to first keyframe packet) of ``count`` extra viewers
    joining one at a time; each leaves once its first keyframe arrived."""
    posts: list[float] = []
    joins: list[float] = []
    errors: list[str] = []
    for _ in range(count):
        await asyncio.sleep(random.uniform(0.1, 0.4))
        viewer = CountingViewer(base, camera_id)
        try:
            await viewer.open(http)
            await viewer.wait_keyframe(10)
            assert viewer.post_s is not None and viewer.first_keyframe_s is not None
            posts.append(viewer.post_s)
            joins.append(viewer.first_keyframe_s)
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}"[:200])
            if viewer.post_s is not None:
                posts.append(viewer.post_s)
        finally:
            await viewer.close(http)
    return posts, joins, errors


@dataclass
class FirstFrames:
    """Late joiners at one GOP length."""

    gop_s: float
    first_frame_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    decode_errors: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)


async def first_frames(
    http: aiohttp.ClientSession, base: str, camera_id: str, gop_s: float, joins: int
) -> FirstFrames:
    """``joins`` decoding viewers, one at a time, each at a random point of the GOP."""
    result = FirstFrames(gop_s)
    errors = DecodeErrorCounter()
    logging.getLogger().addHandler(errors)
    try:
        for _ in range(joins):
            await asyncio.sleep(random.uniform(0, gop_s))
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            viewer = WhepViewer(base, camera_id, pc=pc)
            try:
                await viewer.connect(http)
                await viewer.wait_frames(1, FIRST_FRAME_DEADLINE_S)
                assert viewer.first_frame_s is not None
                result.first_frame_s.append(viewer.first_frame_s)
                result.sizes |= viewer.sizes
            except Exception as err:
                result.failures.append(f"{type(err).__name__}: {err}"[:200])
            finally:
                await viewer.close(http)
    finally:
        logging.getLogger().removeHandler(errors)
    result.decode_errors = errors.errors
    return result


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Results:
    """Everything one run measured."""

    args: argparse.Namespace
    idle: list[Window] = field(default_factory=list)
    baseline: list[Window] = field(default_factory=list)
    baseline_after: list[Window] = field(default_factory=list)
    rss_idle: float = 0.0
    rss_baseline: float = 0.0
    rss_after: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    ramp_errors: list[str] = field(default_factory=list)
    ramp_post_s: list[float] = field(default_factory=list)
    ramp_keyframe_s: list[float] = field(default_factory=list)
    udp_drops: int = 0
    baseline_threads: dict[str, float] = field(default_factory=dict)
    probe_post_s: list[float] = field(default_factory=list)
    probe_join_s: list[float] = field(default_factory=list)
    probe_errors: list[str] = field(default_factory=list)
    first: list[FirstFrames] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    churn: list[tuple[float, float, float]] = field(default_factory=list)
    seconds: float = 0.0

    def base_cores(self) -> float:
        """Median relay cores with the camera and no viewer."""
        return statistics.median(w.cores for w in self.baseline)


async def cpu_part(
    res: Results, http: aiohttp.ClientSession, relay: RelayProcess, api: CameraApi, work: Path
) -> str:
    """Idle, baseline, viewer rows, POST probes, baseline after; returns the camera id."""
    a = res.args
    pid = relay.pid
    say(f"relay idle, no camera ({a.idle_window:.0f} s)")
    res.idle = await windows(pid, None, a.idle_window, 1)
    res.rss_idle = rss_mb(pid)
    cam = camera(a.cpu_gop)
    await asyncio.to_thread(cam.start)
    try:
        camera_id = await api.add_camera("bench", cam.url)
        await api.wait_playable(camera_id)
        await asyncio.sleep(a.settle)
        say(f"baseline: camera, no viewer ({a.repeats} x {a.window:.0f} s)")
        threads = thread_cpu(pid)
        res.baseline = await windows(pid, None, a.window, a.repeats)
        res.baseline_threads = thread_groups(pid, threads, thread_cpu(pid), await thread_names(pid))
        res.rss_baseline = rss_mb(pid)
        res.figures = await api.camera_figures(camera_id)
        workers = [
            await ViewerWorker.start(relay.base, camera_id, work / f"worker{i}.log")
            for i in range(a.workers)
        ]
        load = LoadGenerator(workers, a.concurrency)
        drops = udp_receive_errors()
        try:
            await viewer_rows(res, http, relay, api, load, camera_id, work)
            await load.close_all()
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
        res.udp_drops = udp_receive_errors() - drops
        await asyncio.sleep(a.settle)
        say(f"baseline after the viewers left ({a.window:.0f} s)")
        res.baseline_after = await windows(pid, None, a.window, 1)
        res.rss_after = rss_mb(pid)
        if a.cpu_gop in a.gops and a.variant != "stock":
            res.first.append(await first_frame_part(http, relay.base, camera_id, a.cpu_gop, a))
        await api.delete_camera(camera_id)
    finally:
        await asyncio.to_thread(cam.stop)
    return camera_id


async def viewer_rows(
    res: Results,
    http: aiohttp.ClientSession,
    relay: RelayProcess,
    api: CameraApi,
    load: LoadGenerator,
    camera_id: str,
    work: Path,
) -> None:
    """Grow the audience through ``--viewers`` and measure each step."""
    a = res.args
    pid = relay.pid
    for n in a.viewers:
        say(f"{n} viewers: connecting")
        await load.grow_to(n)
        if load.viewers < n:
            say(f"  only {load.viewers} of {n} viewers connected")
        await asyncio.sleep(a.settle)
        say(f"{load.viewers} viewers: measuring ({a.repeats} x {a.window:.0f} s)")
        row = Row(load.viewers, await windows(pid, load, a.window, a.repeats), rss_mb(pid))
        totals = await load.totals()
        row.lost = max(0, totals.sr_packets - totals.received_at_sr)
        row.drops_viewers = sum(udp_socket_drops(w.proc.pid) for w in load.workers)
        res.rows.append(row)
        if n in a.profile_at:
            if not PY_SPY.exists():
                say("  py-spy missing: .venv/bin/pip install py-spy (dev tool)")
            else:
                say(f"{load.viewers} viewers: py-spy ({a.profile_seconds:.0f} s)")
                out = work / f"relay-{load.viewers}-viewers.pyspy.txt"
                res.profiles.append(await profile(pid, load, a.profile_seconds, out))
    res.ramp_post_s = list(load.post_s)
    res.ramp_keyframe_s = list(load.first_keyframe_s)
    res.ramp_errors = list(load.errors)
    if a.post_probes:
        say(f"{load.viewers} viewers: {a.post_probes} WHEP POST probes")
        posts, joins, errors = await probe_posts(http, relay.base, camera_id, a.post_probes)
        res.probe_post_s, res.probe_join_s, res.probe_errors = posts, joins, errors
    top = load.viewers
    for cycle in range(a.churn):
        say(f"churn {cycle + 1}/{a.churn}: {top} viewers leave and come back")
        await load.close_all()
        await asyncio.sleep(a.settle)
        left = rss_mb(pid)
        still = (await api.camera_figures(camera_id)).get("viewers", 0.0)
        await load.grow_to(top)
        await asyncio.sleep(a.settle)
        res.churn.append((left, rss_mb(pid), still))


async def first_frame_part(
    http: aiohttp.ClientSession, base: str, camera_id: str, gop_s: float, a: argparse.Namespace
) -> FirstFrames:
    """Late joiners on a camera that is already playable."""
    say(f"GOP {gop_s:g} s: {a.joins} late joiners")
    return await first_frames(http, base, camera_id, gop_s, a.joins)


async def run(args: argparse.Namespace) -> Results:
    """The whole benchmark."""
    res = Results(args)
    started = time.monotonic()
    configure_host_addresses([LOOPBACK])
    work = Path(tempfile.mkdtemp(prefix="kitchencam-bench-"))
    args.workdir = work
    async with relay_process(args.variant, work) as relay, aiohttp.ClientSession() as http:
        api = camera_api(args.variant, http, relay.base)
        await api.prepare()
        await cpu_part(res, http, relay, api, work)
        if args.variant == "stock":
            args.gops = []  # the stock relay forwards live packets: first frame waits a GOP
        for gop_s in [g for g in args.gops if g != args.cpu_gop]:
            cam = camera(gop_s)
            await asyncio.to_thread(cam.start)
            try:
                camera_id = await api.add_camera(f"gop{gop_s:g}", cam.url)
                await api.wait_playable(camera_id)
                res.first.append(await first_frame_part(http, relay.base, camera_id, gop_s, args))
                await api.delete_camera(camera_id)
            finally:
                await asyncio.to_thread(cam.stop)
    res.first.sort(key=lambda f: f.gop_s)
    res.seconds = time.monotonic() - started
    if not args.keep:
        await asyncio.to_thread(shutil.rmtree, work / "data", True)
    return res


def say(text: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the table -------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    """Seconds as whole milliseconds."""
    return f"{seconds * 1000:.0f}"


def report(res: Results) -> str:
    """The results as Markdown tables."""
    a = res.args
    idle = res.idle[0].cores
    base = res.base_cores()
    after = statistics.median(w.cores for w in res.baseline_after) if res.baseline_after else base
    f = res.figures
    base_seconds = sum(w.seconds for w in res.baseline)
    out = [
        f"Camera {WIDTH}x{HEIGHT}, {FPS} fps, {BITRATE_KBPS} kbit/s asked; the relay measured "
        f"{f.get('fps', 0):.1f} fps, {f.get('bitrate_bps', 0) / 1e6:.2f} Mbit/s, "
        f"GOP {f.get('keyframe_interval_seconds', 0):.2f} s. Windows: {a.repeats} x "
        f"{a.window:g} s per row; {a.workers} load-generator processes. Run took "
        f"{res.seconds:.0f} s.",
        "",
        "| relay state | cores (CPU-s/s) | RSS MB |",
        "|---|---:|---:|",
        f"| running, no camera | {idle:.4f} | {res.rss_idle:.1f} |",
        f"| 1 camera, 0 viewers (baseline) | {base:.4f} "
        f"({', '.join(f'{w.cores:.4f}' for w in res.baseline)}) | {res.rss_baseline:.1f} |",
        f"| **ingest per camera** (baseline - no camera) | **{base - idle:.4f}** | "
        f"{res.rss_baseline - res.rss_idle:.1f} |",
        *(
            f"| baseline, of which {kind} | {cpu / base_seconds:.4f} | |"
            for kind, cpu in sorted(res.baseline_threads.items())
        ),
        f"| 1 camera, 0 viewers, after the viewers left | {after:.4f} | {res.rss_after:.1f} |",
        "",
        "| viewers | relay cores (min-max) | x baseline | above baseline | per viewer "
        "| RTP pkt/s | **µs/pkt** | user/sys | loop | RSS MB | lost (gaps / vs SR / drops) "
        "| load gen cores | machine busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in res.rows:
        lo, hi = row.spread()
        cores = row.cores()
        us = row.us_per_packet(base)
        sent = row.packets_per_s() * sum(w.seconds for w in row.windows)
        out.append(
            f"| {row.viewers} | {cores:.3f} ({lo:.3f}-{hi:.3f}) | {cores / base:.1f} "
            f"| {cores - base:.3f} | {(cores - base) / row.viewers:.4f} "
            f"| {row.packets_per_s():.0f} | **{us:.0f}** | "
            f"{row.mean('user_s'):.3f}/{row.mean('sys_s'):.3f} | {row.mean('loop_s'):.3f} "
            f"| {row.rss_mb:.1f} "
            f"| {sum(w.gaps for w in row.windows)} / {row.lost} / {row.drops_viewers} "
            f"of {sent:.0f} "
            f"| {row.mean('loadgen_s'):.2f} "
            f"| {row.mean('machine_s'):.2f} of {os.cpu_count()} |"
            if us is not None
            else f"| {row.viewers} | no packets |"
        )
    if res.rows:
        top = res.rows[-1]
        out += [
            "",
            f"RSS per viewer: {(top.rss_mb - res.rss_baseline) / top.viewers:.2f} MB "
            f"({top.viewers} viewers {top.rss_mb:.1f} MB vs 0 viewers {res.rss_baseline:.1f} MB; "
            f"{res.rss_after:.1f} MB after they left).",
        ]
        for i, (left, back, still) in enumerate(res.churn, 1):
            out.append(
                f"Churn {i}: all {top.viewers} left: {left:.1f} MB ({still:.0f} viewers still "
                f"counted by the relay); back: {back:.1f} MB."
            )
    if res.probe_post_s:
        p = res.probe_post_s
        out.append(
            f"WHEP POST while {res.rows[-1].viewers if res.rows else 0} viewers stream "
            f"(n={len(p)}): median {ms(statistics.median(p))} ms, **p95 {ms(percentile(p, 95))} "
            f"ms**, max {ms(max(p))} ms; first keyframe packet at the joiner: median "
            f"{ms(statistics.median(res.probe_join_s or [0]))} ms, p95 "
            f"{ms(percentile(res.probe_join_s or [0], 95))} ms; failures "
            f"{len(res.probe_errors)}."
        )
    if res.ramp_post_s:
        p = res.ramp_post_s
        out.append(
            f"WHEP POST while ramping up ({a.workers} x {a.concurrency} concurrent joins, "
            f"n={len(p)}): median {ms(statistics.median(p))} ms, p95 {ms(percentile(p, 95))} "
            f"ms, max {ms(max(p))} ms; first keyframe packet p95 "
            f"{ms(percentile(res.ramp_keyframe_s, 95))} ms, max {ms(max(res.ramp_keyframe_s))} "
            f"ms; viewers that failed to start: {len(res.ramp_errors)}; UDP datagrams dropped "
            f"for full receive buffers (machine-wide) during the viewer part: {res.udp_drops}."
        )
    if res.first:
        out += [
            "",
            "| GOP | joins | first frame median | **p95** | min | max | failed | decode errors "
            "| sizes |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for ff in res.first:
            v = ff.first_frame_s or [math.nan]
            out.append(
                f"| {ff.gop_s:g} s | {len(ff.first_frame_s)} | {ms(statistics.median(v))} ms "
                f"| **{ms(percentile(v, 95))} ms** | {ms(min(v))} ms | {ms(max(v))} ms "
                f"| {len(ff.failures)} | {ff.decode_errors} "
                f"| {', '.join(f'{w}x{h}' for w, h in sorted(ff.sizes))} |"
            )
    for prof in res.profiles:
        out += ["", *profile_table(prof, res.baseline[0])]
    errors = res.ramp_errors + res.probe_errors + [e for ff in res.first for e in ff.failures]
    if errors:
        out += ["", "Errors:", *(f"- {e}" for e in Counter(errors))]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""

    def numbers(text: str) -> list[float]:
        return [float(x) for x in text.split(",") if x.strip()]

    def counts(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", type=counts, default=[1, 10, 50], help="viewer counts (1,10,50)")
    p.add_argument("--window", type=float, default=10.0, help="seconds per CPU window (10)")
    p.add_argument("--repeats", type=int, default=2, help="windows per viewer count (2)")
    p.add_argument("--idle-window", type=float, default=8.0, help="seconds, no camera (8)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before measuring (3)")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes (2)")
    p.add_argument("--concurrency", type=int, default=4, help="joins at once per worker (4)")
    p.add_argument("--post-probes", type=int, default=20, help="WHEP POSTs under load (20)")
    p.add_argument("--cpu-gop", type=float, default=2.0, help="GOP of the CPU part, s (2)")
    p.add_argument("--gops", type=numbers, default=[1.0, 2.0, 4.0], help="GOPs, s (1,2,4)")
    p.add_argument("--joins", type=int, default=20, help="late joiners per GOP (20)")
    p.add_argument(
        "--profile-at", type=counts, default=[], help="viewer counts to py-spy (e.g. 10,50)"
    )
    p.add_argument("--profile-seconds", type=float, default=15.0, help="py-spy duration (15)")
    p.add_argument(
        "--churn", type=int, default=2, help="leave-and-rejoin cycles of the most viewers (2)"
    )
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default="kitchencam",
        help="kitchencam (the product), lean (bench/lean_relay.py's prototype send loop), "
        "stock (bench/stock_relay.py, aiortc's own pass-through)",
    )
    p.add_argument("--keep", action="store_true", help="keep the relay's data directory")
    p.add_argument("--seed", type=int, default=None, help="random seed for join times")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    random.seed(args.seed)
    res = asyncio.run(run(args))
    print(report(res))
    say(f"logs and profiles in {args.workdir}")


if __name__ == "__main__":
    main()
