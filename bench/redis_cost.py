"""Redis cost per camera, measured: commands/s, Redis CPU and bytes per camera, extrapolated.

``.venv/bin/python bench/redis_cost.py --cameras 40`` starts ``kitchencam redis``, one
``kitchencam web``, ``relay`` and ``checker`` on it, and one RTSP test camera whose shared
encoder serves every registered camera (each registration is its own RTSP session and its own
pull, analysis and compliance state). Once every camera is live and ``ok`` it measures, on
loopback:

1. ``INFO commandstats`` and ``INFO cpu`` deltas over ``--window`` seconds (after
   ``CONFIG RESETSTAT``): commands/s and Redis CPU per camera, and the same with no camera
   registered (what the processes cost by themselves, subtracted);
2. a ``MONITOR`` sample over ``--monitor-window`` seconds (separately: MONITOR costs Redis
   CPU), commands grouped by command and key family, so the writes that repeat on a timer
   stand out;
3. ``MEMORY USAGE`` of every key, grouped by family, and ``used_memory``; events and their
   evidence snapshots measured from the events the run itself raised (each camera's first
   ``ok`` is one).

It prints Markdown tables and the extrapolation to ``--target`` cameras (100,000) against
``--redis-ops`` commands/s (100,000: a realistic figure for one Redis core with small
pipelined commands). Results are in ``docs/scaling.md`` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import Fleet, live_cameras, ok_cameras, register, say, states, wait_for
from tests.support.camera import RtspCamera

WARMUP_DEADLINE_S = 240.0
ID_SEGMENT = re.compile(r"^([0-9a-f]{12,}|\d{10,}-\d+)$")
DAY_S = 86400
MONITOR_SAVE_S = 7.5
"""How often the replay saves each monitor: the rate the real run measured (0.133/s)."""


def family(key: str) -> str:
    """A key with its ids replaced: ``kc:camera:{id}:state``."""
    parts = key.split(":")
    if parts[:2] == ["kc", "role"] and len(parts) > 3:
        return ":".join([*parts[:3], "{instance}"])
    if parts[:2] == ["kc", "relay"] and len(parts) > 2:
        return "kc:relay:{relay}"
    return ":".join("{id}" if ID_SEGMENT.match(p) else p for p in parts)


@dataclass
class Window:
    """Redis counters over one window."""

    seconds: float
    calls: Counter[str]
    redis_cpu_s: float
    role_cpu_s: dict[str, float]

    @property
    def commands(self) -> int:
        """Commands executed."""
        return sum(self.calls.values())


def command_calls(client: redis.Redis) -> Counter[str]:
    """Calls per command since the last ``CONFIG RESETSTAT``."""
    stats: Any = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU-seconds of the Redis server so far (user + system, main thread and others)."""
    cpu: Any = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def measure(fleet: Fleet, seconds: float) -> Window:
    """Command counts, Redis CPU and role CPU over ``seconds``."""
    assert fleet.redis is not None
    client = fleet.redis.client
    client.config_resetstat()
    cpu0 = redis_cpu_s(client)
    roles0 = {r.name: r.cpu_s() for r in fleet.roles}
    t0 = time.monotonic()
    time.sleep(seconds)
    calls = command_calls(client)
    elapsed = time.monotonic() - t0
    calls.pop("config", None)
    calls.pop("info", None)
    return Window(
        elapsed,
        calls,
        redis_cpu_s(client) - cpu0,
        {r.name: r.cpu_s() - roles0[r.name] for r in fleet.roles},
    )


def first_key(name: str, args: list[str]) -> str:
    """The key a command acts on (after ``STREAMS`` for stream reads), or ``""``."""
    if name in ("xread", "xreadgroup"):
        upper = [a.upper() for a in args]
        return args[upper.index("STREAMS") + 1] if "STREAMS" in upper[:-1] else ""
    return args[0] if args else ""


def monitor(url: str, seconds: float) -> Counter[tuple[str, str]]:
    """Commands seen by ``MONITOR`` for ``seconds``, by (command, key family)."""
    seen: Counter[tuple[str, str]] = Counter()
    client = redis.Redis.from_url(url, decode_responses=True)
    end = time.monotonic() + seconds
    with client.monitor() as mon:  # type: ignore[no-untyped-call]
        mon.connection.socket_timeout = 1.0
        while time.monotonic() < end:
            try:
                line = mon.next_command()
            except (redis.TimeoutError, TimeoutError):
                continue
            args = str(line.get("command", "")).split(" ", 8)
            name = args[0].lower()
            if not name or name in ("monitor", "info", "exec", "multi"):
                continue
            seen[(name, family(first_key(name, args[1:])))] += 1
    client.close()
    return seen


@dataclass
class Replay:
    """Redis under the per-camera write mix of many virtual cameras, grouped by relay."""

    cameras: int
    per_relay: int
    seconds: float
    commands: int
    redis_cpu_s: float
    memory_bytes: int
    lease_ttl_s: float
    scan_cpu_s: float = 0.0
    """Redis CPU of one look for free cameras over every lease key (MGET in chunks of 1000)."""
    scan_wall_s: float = 0.0
    aof_bytes: int = 0
    """Growth of the append-only file during the measured window."""


async def _relay_writes(
    url: str,
    cids: list[str],
    live_value: str,
    monitor_value: str,
    lease_ttl_s: float,
    end: float,
    phase: float,
) -> None:
    """One virtual relay: the real relay's timers and write paths, for ``cids``, until ``end``.

    With the product's own lease code (``LeaseStore``): claims every camera once, renews all
    its leases in one script call every third of the TTL, and sends every write about a camera
    as a lease-fenced batch, one script call per relay, as ``RelayHub.publish_figures`` (figures
    and compliance holds together every 5 s) and the samplers (monitor saves, at the measured
    rate) do.
    """
    import redis.asyncio as aioredis

    from kitchencam.compliance.store import ComplianceStore
    from kitchencam.relay.leases import Lease, LeaseStore, parse_lease

    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = LeaseStore(client)
    instance = f"replay-{cids[0]}"
    leases = {}
    for cid in cids:
        lease = await store.claim(cid, instance, lease_ttl_s)
        if lease is None:  # still ours from the warm-up pass
            raw = await client.get(f"kc:lease:{cid}")
            ours = parse_lease(str(raw) if raw is not None else None)
            lease = Lease(cid, *ours) if ours and ours[0] == instance else None
            if raw is None:  # it ran out in between: claim it again
                lease = await store.claim(cid, instance, lease_ttl_s)
        if lease is not None:
            leases[cid] = lease
    if len(leases) < len(cids):
        raise RuntimeError(f"replay relay {instance}: {len(cids) - len(leases)} leases not ours")
    next_figures = next_monitor = next_lease = time.monotonic() + phase
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_lease:
                await store.renew(list(leases.values()), lease_ttl_s)
                next_lease += lease_ttl_s / 3
            if now >= next_figures:
                batches = []
                for cid, lease in leases.items():
                    batch = store.batch(lease).set(f"kc:live:{cid}", live_value, ex=20)
                    ComplianceStore.stage_held(batch, [cid], instance)
                    batches.append(batch)
                await store.run_batches(batches)
                next_figures += 5.0
            if now >= next_monitor:
                await store.run_batches(
                    [
                        store.batch(lease).set(f"kc:camera:{cid}:monitor", monitor_value)
                        for cid, lease in leases.items()
                    ]
                )
                next_monitor += MONITOR_SAVE_S
            await asyncio.sleep(
                max(0.0, min(next_figures, next_monitor, next_lease) - time.monotonic())
            )
    finally:
        await client.aclose()


def replay(client: redis.Redis, url: str, args: argparse.Namespace) -> Replay:
    """Replay the measured write mix for ``args.replay`` virtual cameras; measure Redis."""
    sample = client.scan_iter(match="kc:live:*", count=1000)
    live_value = str(client.get(next(iter(sample))))
    monitor_value = str(client.get(next(iter(client.scan_iter(match="kc:camera:*:monitor")))))
    cids = [f"v{i:07d}" for i in range(args.replay)]
    groups = [cids[i : i + args.per_relay] for i in range(0, len(cids), args.per_relay)]
    period = 5.0

    async def all_relays(end: float) -> None:
        await asyncio.gather(
            *(
                _relay_writes(
                    url,
                    group,
                    live_value,
                    monitor_value,
                    args.lease_ttl,
                    end,
                    period * i / len(groups),
                )
                for i, group in enumerate(groups)
            )
        )

    used0 = int(client.info("memory")["used_memory"])
    asyncio.run(all_relays(time.monotonic() + period * 2))  # every key written once
    client.config_resetstat()
    cpu0 = redis_cpu_s(client)
    aof0 = aof_size(client)
    t0 = time.monotonic()
    asyncio.run(all_relays(time.monotonic() + args.replay_window))
    aof_bytes = aof_size(client) - aof0
    seconds = time.monotonic() - t0
    calls = command_calls(client)
    for name in ("config", "info"):
        calls.pop(name, None)
    result = Replay(
        args.replay,
        args.per_relay,
        seconds,
        sum(calls.values()),
        redis_cpu_s(client) - cpu0,
        int(client.info("memory")["used_memory"]) - used0,
        args.lease_ttl,
    )
    result.scan_cpu_s, result.scan_wall_s = free_scan(client, cids)
    result.aof_bytes = aof_bytes
    return result


def aof_size(client: redis.Redis) -> int:
    """Current size of the append-only file (0 without one)."""
    info: Any = client.info("persistence")
    return int(info.get("aof_current_size", 0)) if int(info.get("aof_enabled", 0)) else 0


def free_scan(client: redis.Redis, cids: list[str], repeats: int = 5) -> tuple[float, float]:
    """Redis CPU and wall time of one relay's look for free cameras over ``cids``: ``MGET`` of
    every lease key in chunks of 1000 (``LeaseStore.free``), median of ``repeats``."""
    cpu, wall = [], []
    for _ in range(repeats):
        cpu0, t0 = redis_cpu_s(client), time.monotonic()
        for start in range(0, len(cids), 1000):
            client.mget([f"kc:lease:{c}" for c in cids[start : start + 1000]])
        wall.append(time.monotonic() - t0)
        cpu.append(redis_cpu_s(client) - cpu0)
    return sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2]


@dataclass
class Memory:
    """Bytes per key family."""

    used_memory: int
    families: dict[str, tuple[int, int]] = field(default_factory=dict)  # family: (keys, bytes)


def memory(client: redis.Redis) -> Memory:
    """``MEMORY USAGE`` of every key (all samples), summed by family."""
    info: Any = client.info("memory")
    out = Memory(int(info["used_memory"]))
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        used = client.memory_usage(key, samples=0)
        if used is None:
            continue
        fam = family(str(key))
        count[fam] += 1
        size[fam] += int(used)
    out.families = {fam: (count[fam], size[fam]) for fam in count}
    return out


@dataclass
class Result:
    """Everything one run measured."""

    cameras: int
    idle: Window
    loaded: Window
    monitored: Counter[tuple[str, str]]
    monitor_seconds: float
    mem_idle: Memory
    mem: Memory
    warmup_s: float
    args: argparse.Namespace
    mem_flagged: Memory | None = None
    replayed: Replay | None = None


def run(args: argparse.Namespace) -> Result:
    """Start the fleet, measure with no camera and with ``args.cameras``, stop."""
    workdir = Path(tempfile.mkdtemp(prefix="kc-redis-cost-"))
    fleet = Fleet(workdir)
    try:
        say(f"work directory {workdir}")
        redis_proc = fleet.start_redis()
        client = redis_proc.client
        fleet.settings["sample_interval_s"] = str(args.sample_interval)
        web = fleet.start_role("web", "web")
        fleet.start_role("relay", "relay")
        fleet.start_role("checker", "checker")
        url = fleet.start_camera(
            RtspCamera(width=320, height=240, fps=args.fps, bitrate_kbps=500, gop=args.gop)
        )
        say(f"no camera: {args.window:g} s window")
        idle = measure(fleet, args.window)
        mem_idle = memory(client)
        say(f"registering {args.cameras} cameras")
        ids = asyncio.run(register(web.base, url, args.cameras))
        started = time.monotonic()
        wait_for(
            "cameras not live", lambda: live_cameras(client, ids) == len(ids), WARMUP_DEADLINE_S
        )
        wait_for("cameras not ok", lambda: ok_cameras(client, ids) == len(ids), WARMUP_DEADLINE_S)
        warmup = time.monotonic() - started
        say(f"all {len(ids)} live and ok after {warmup:.0f} s; {args.window:g} s window")
        loaded = measure(fleet, args.window)
        say(f"MONITOR for {args.monitor_window:g} s")
        monitored = monitor(redis_proc.url, args.monitor_window)
        mem = memory(client)
        if args.flag_cycle:
            assert fleet.camera is not None
            say("flag cycle: camera stalled until every camera is offline, then resumed")
            fleet.camera.stall()
            wait_for(
                "cameras not offline",
                lambda: states(client, ids, "offline") == len(ids),
                WARMUP_DEADLINE_S,
            )
            fleet.camera.resume()
            wait_for(
                "cameras not ok again",
                lambda: ok_cameras(client, ids) == len(ids),
                WARMUP_DEADLINE_S,
            )
            mem_flagged = memory(client)
        else:
            mem_flagged = None
        replayed = None
        if args.replay:
            for role in [r for r in fleet.roles if r.role == "relay"]:
                fleet.stop_role(role)  # its own writes would mix in
            say(f"replaying the write mix of {args.replay} cameras for {args.replay_window:g} s")
            replayed = replay(client, redis_proc.url, args)
        return Result(
            len(ids),
            idle,
            loaded,
            monitored,
            args.monitor_window,
            mem_idle,
            mem,
            warmup,
            args,
            mem_flagged,
            replayed,
        )
    finally:
        fleet.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def human_bytes(n: float) -> str:
    """Bytes as B, KB, MB, GB (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.1f} PB"


def report(res: Result) -> str:
    """Markdown tables and the extrapolation."""
    a = res.args
    n = res.cameras
    idle_rate = res.idle.commands / res.idle.seconds
    rate = res.loaded.commands / res.loaded.seconds
    per_cam = (rate - idle_rate) / n
    cpu_idle = res.idle.redis_cpu_s / res.idle.seconds
    cpu = res.loaded.redis_cpu_s / res.loaded.seconds
    cpu_per_cam = (cpu - cpu_idle) / n
    out = [
        f"{n} cameras (320x240, {a.fps} fps, GOP {a.gop} frames), one web, relay and checker "
        f"process, sample interval {a.sample_interval:g} s; windows of "
        f"{res.loaded.seconds:.0f} s; warm-up (register to all ok) {res.warmup_s:.0f} s.",
        "",
        "| | no camera | " + f"{n} cameras | per camera |",
        "|---|---:|---:|---:|",
        f"| Redis commands/s | {idle_rate:.1f} | {rate:.1f} | **{per_cam:.3f}** |",
        f"| Redis CPU (cores) | {cpu_idle:.4f} | {cpu:.4f} | **{cpu_per_cam * 1e6:.0f} µs/s** |",
    ]
    for name in res.loaded.role_cpu_s:
        before = res.idle.role_cpu_s.get(name, 0.0) / res.idle.seconds
        after = res.loaded.role_cpu_s[name] / res.loaded.seconds
        out.append(
            f"| {name} process CPU (cores) | {before:.4f} | {after:.4f} | "
            f"{(after - before) / n:.5f} |"
        )
    out += ["", "| command | calls/s, no camera | calls/s with cameras | per camera per s |"]
    out.append("|---|---:|---:|---:|")
    names = set(res.idle.calls) | set(res.loaded.calls)
    for name in sorted(names, key=lambda k: -res.loaded.calls.get(k, 0)):
        i = res.idle.calls.get(name, 0) / res.idle.seconds
        c = res.loaded.calls.get(name, 0) / res.loaded.seconds
        out.append(f"| {name} | {i:.2f} | {c:.2f} | {(c - i) / n:.4f} |")
    out += [
        "",
        f"MONITOR sample ({res.monitor_seconds:g} s, with cameras), by command and key:",
        "",
        "| command | key family | calls/s | per camera per s |",
        "|---|---|---:|---:|",
    ]
    for (name, fam), calls in res.monitored.most_common():
        c = calls / res.monitor_seconds
        out.append(f"| {name} | `{fam}` | {c:.2f} | {c / n:.4f} |")
    out += ["", "| key family | keys | bytes | bytes per key |", "|---|---:|---:|---:|"]
    for fam, (keys, size) in sorted(res.mem.families.items(), key=lambda kv: -kv[1][1]):
        out.append(f"| `{fam}` | {keys} | {size} | {size / keys:.0f} |")
    used_per_cam = (res.mem.used_memory - res.mem_idle.used_memory) / n
    families = res.mem.families
    events = families.get("kc:event:{id}", (0, 0))
    snaps = families.get("kc:snapshot:{id}", (0, 0))
    per_camera_keys = sum(
        size
        for name, (_, size) in families.items()
        if name.startswith("kc:camera:{id}")
        or name.startswith("kc:live:")
        or name.startswith("kc:lease:")
        or name.startswith("kc:fence:")
    )
    out += [
        "",
        f"used_memory: {human_bytes(res.mem_idle.used_memory)} with no camera, "
        f"{human_bytes(res.mem.used_memory)} with {n}: **{human_bytes(used_per_cam)} per "
        f"camera** (everything: per-camera keys, index entries, streams, events of the run).",
        f"Per-camera keys alone (`kc:camera:{{id}}*`, `kc:live`, leases): "
        f"{human_bytes(per_camera_keys / n)} per camera.",
    ]
    per_event = 0.0
    if res.mem_flagged is not None:
        flagged = res.mem_flagged.families
        new_events = flagged.get("kc:event:{id}", (0, 0))[0] - events[0]
        new_snaps = flagged.get("kc:snapshot:{id}", (0, 0))
        if new_events > 0:
            per_event = (res.mem_flagged.used_memory - res.mem.used_memory) / new_events
            snap_size = new_snaps[1] / new_snaps[0] if new_snaps[0] else 0.0
            event_size = flagged["kc:event:{id}"][1] / flagged["kc:event:{id}"][0]
            out.append(
                f"Flag cycle (ok -> offline -> ok for every camera): {new_events} new events, "
                f"{new_snaps[0] - snaps[0]} new evidence snapshots "
                f"({human_bytes(snap_size)} each on average, event records "
                f"{human_bytes(event_size)}): used_memory grew **{human_bytes(per_event)} per "
                f"state change** (event, its snapshots, index entries, news entry, "
                f"applied marker)."
            )
    if res.mem_flagged is not None:
        out += [
            "",
            "| key family | bytes added by the flag cycle | keys added |",
            "|---|---:|---:|",
        ]
        for name, (k, size) in sorted(res.mem_flagged.families.items()):
            k0, size0 = res.mem.families.get(name, (0, 0))
            if size != size0:
                out.append(f"| `{name}` | {size - size0} | {k - k0} |")
    target = a.target
    ops = per_cam * target + idle_rate
    out += [
        "",
        f"**Extrapolation to {target:,} cameras**: {ops:,.0f} commands/s "
        f"({ops / a.redis_ops:.2f} of a {a.redis_ops:,}-commands/s Redis); Redis CPU "
        f"{cpu_per_cam * target:.2f} cores at this machine's speed (one Redis core carries "
        f"about {1 / cpu_per_cam:,.0f} cameras, if Redis CPU stays linear); memory "
        f"{human_bytes(used_per_cam * target)}; one {a.redis_ops:,}-commands/s Redis carries "
        f"about {a.redis_ops / per_cam:,.0f} cameras by commands.",
    ]
    for flags in (1, 5, 20):
        if per_event:
            daily = flags * target * per_event
            out.append(
                f"At {flags} state change(s) per camera per day: "
                f"{human_bytes(daily)}/day of events and evidence, "
                f"{human_bytes(daily * a.retention_days)} kept over {a.retention_days} days."
            )
    rp = res.replayed
    if rp is not None:
        rate_rp = rp.commands / rp.seconds
        cpu_rp = rp.redis_cpu_s / rp.seconds
        out += [
            "",
            f"**Replay at scale**: {rp.cameras:,} virtual cameras in relays of {rp.per_relay} "
            f"(lease renewals every {rp.lease_ttl_s / 3:.2f} s, fenced figures and holds every "
            f"5 s, fenced monitor saves every {MONITOR_SAVE_S:g} s, pipelined per relay, through "
            f"the product's `LeaseStore`): {rate_rp:,.0f} commands/s "
            f"({rate_rp / rp.cameras:.3f} per camera), Redis "
            f"CPU {cpu_rp:.3f} cores = {cpu_rp / rate_rp * 1e6:.2f} µs per command, "
            f"**{cpu_rp / rp.cameras * 1e6:.1f} µs/s per camera** "
            f"({1 / (cpu_rp / rp.cameras):,.0f} cameras per Redis core; "
            f"{cpu_rp / rp.cameras * target:.2f} cores for {target:,}); memory of those keys "
            f"{human_bytes(rp.memory_bytes / rp.cameras)} per camera; append-only file grew "
            f"{human_bytes(rp.aof_bytes / rp.seconds)}/s "
            f"({rp.aof_bytes / rp.seconds / rp.cameras:.0f} B/s per camera).",
            f"One look for free cameras over all {rp.cameras:,} lease keys (`MGET` in chunks of "
            f"1000, as `LeaseStore.free`): Redis CPU {rp.scan_cpu_s * 1000:.1f} ms, "
            f"{rp.scan_wall_s * 1000:.0f} ms wall for the client; "
            f"{rp.scan_cpu_s / rp.cameras * 1e6:.2f} µs per key, so "
            f"{rp.scan_cpu_s / rp.cameras * target * 1000:.0f} ms of Redis per scan at "
            f"{target:,} cameras.",
        ]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=40, help="cameras registered (40)")
    p.add_argument("--window", type=float, default=60.0, help="seconds per window (60)")
    p.add_argument("--monitor-window", type=float, default=30.0, help="MONITOR seconds (30)")
    p.add_argument("--fps", type=int, default=25, help="test camera frame rate (25)")
    p.add_argument("--gop", type=int, default=50, help="test camera GOP in frames (50)")
    p.add_argument("--sample-interval", type=float, default=2.0, help="analysis interval s (2)")
    p.add_argument("--target", type=int, default=100_000, help="cameras to extrapolate to")
    p.add_argument("--redis-ops", type=int, default=100_000, help="commands/s one Redis carries")
    p.add_argument("--retention-days", type=int, default=90, help="event retention (90)")
    p.add_argument(
        "--no-flag-cycle",
        dest="flag_cycle",
        action="store_false",
        help="skip stalling the camera (ok -> offline -> ok) to measure events with evidence",
    )
    p.add_argument(
        "--replay", type=int, default=0, help="virtual cameras for the at-scale replay (0: none)"
    )
    p.add_argument("--replay-window", type=float, default=30.0, help="replay seconds (30)")
    p.add_argument("--per-relay", type=int, default=100, help="virtual cameras per relay (100)")
    p.add_argument(
        "--lease-ttl", type=float, default=8.0, help="lease TTL of the replay, s (8, the default)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the tables."""
    args = parse_args(argv)
    print(report(run(args)))


if __name__ == "__main__":
    main()
