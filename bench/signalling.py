"""WHEP signalling through a web process: CPU per viewer join in web and in the relay.

``.venv/bin/python bench/signalling.py --joins 100`` starts ``kitchencam redis``, one
``kitchencam web``, one ``kitchencam relay`` (separate processes, as on several machines) and
one RTSP test camera (640x360, 2 Mbit/s), registers the camera, and opens ``--joins`` counting
viewers (``bench/relay_viewers.py`` workers) **through the web process**, which forwards each
offer to the relay holding the camera's lease. It reads the CPU of web and relay (``/proc``)
over the join phase and over a steady window afterwards, and the WHEP POST times seen by the
viewers. Web CPU per join is what sizes web processes for a rush of viewers; relay CPU per join
(above its streaming cost) is the ICE/DTLS set-up and the cached-GOP replay. Results are in
``docs/scaling.md`` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import Fleet, register, say
from bench.relay_load import LoadGenerator, ViewerWorker, percentile
from bench.relay_targets import wait_playable
from kitchencam.relay.webrtc import configure_host_addresses
from tests.support.camera import RtspCamera


async def joins(args: argparse.Namespace) -> str:
    """Run the fleet, open the viewers through web, measure; the Markdown result."""
    configure_host_addresses(["127.0.0.1"])
    work = Path(tempfile.mkdtemp(prefix="kc-signalling-"))
    fleet = Fleet(work)
    workers: list[ViewerWorker] = []
    try:
        fleet.start_redis()
        cap = str(args.joins * 2)
        fleet.settings.update(whep_rate_per_min="0", max_viewers_per_camera=cap, max_viewers=cap)
        web = fleet.start_role("web", "web")
        relay = fleet.start_role("relay", "relay")
        url = fleet.start_camera(
            RtspCamera(width=640, height=360, fps=25, bitrate_kbps=2000, gop=50, transport="tcp")
        )
        [camera_id] = await register(web.base, url, 1)
        async with aiohttp.ClientSession() as http:
            await wait_playable(http, web.base, camera_id)
        await asyncio.sleep(args.settle)  # fixed settling time for the CPU figures
        t0 = time.monotonic()
        w0, r0 = web.cpu_s(), relay.cpu_s()
        await asyncio.sleep(args.window)
        idle_s = time.monotonic() - t0
        relay_idle = (relay.cpu_s() - r0) / idle_s
        web_idle = (web.cpu_s() - w0) / idle_s
        workers = [
            await ViewerWorker.start(web.base, camera_id, work / f"worker{i}.log")
            for i in range(args.workers)
        ]
        load = LoadGenerator(workers, args.concurrency)
        say(f"{args.joins} joins through web")
        t0 = time.monotonic()
        w0, r0 = web.cpu_s(), relay.cpu_s()
        await load.grow_to(args.joins)
        join_s = time.monotonic() - t0
        web_join = web.cpu_s() - w0
        relay_join = relay.cpu_s() - r0
        await asyncio.sleep(args.settle)
        t0 = time.monotonic()
        w0, r0 = web.cpu_s(), relay.cpu_s()
        await asyncio.sleep(args.window)
        stream_s = time.monotonic() - t0
        web_stream = (web.cpu_s() - w0) / stream_s
        relay_stream = (relay.cpu_s() - r0) / stream_s
        await load.close_all()
        n = load.viewers or args.joins
        posts = load.post_s or [0.0]
        relay_per_join = (relay_join - relay_stream * join_s / 2) / n
        return "\n".join(
            [
                f"{n} viewers joined through one web process in {join_s:.1f} s "
                f"({args.workers} x {args.concurrency} joins at a time); {len(load.errors)} "
                "failed.",
                "",
                "| | web cores | relay cores |",
                "|---|---:|---:|",
                f"| camera, no viewer | {web_idle:.4f} | {relay_idle:.4f} |",
                f"| during the joins | {web_join / join_s:.3f} | {relay_join / join_s:.3f} |",
                f"| {n} viewers streaming | {web_stream:.4f} | {relay_stream:.3f} |",
                "",
                f"Web CPU per forwarded join: **{web_join / n * 1000:.1f} ms** (POST forwarded, "
                f"answer passed back; {n / web_join:.0f} joins per web core). Relay CPU per "
                f"join above streaming (ICE, DTLS, cached-GOP replay): about "
                f"{relay_per_join * 1000:.1f} ms. WHEP POST via web: median "
                f"{statistics.median(posts) * 1000:.0f} ms, p95 "
                f"{percentile(posts, 95) * 1000:.0f} ms.",
            ]
        )
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
        fleet.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--joins", type=int, default=100, help="viewers to open (100)")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes (2)")
    p.add_argument("--concurrency", type=int, default=4, help="joins at once per worker (4)")
    p.add_argument("--window", type=float, default=10.0, help="seconds per steady window (10)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before measuring (3)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the result."""
    print(asyncio.run(joins(parse_args(argv))))


if __name__ == "__main__":
    main()
