"""Helpers for the compliance shell tests: the labelled clips as access units, regulators,
and waiting for conditions with deadlines."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import av
from redis.asyncio import Redis

from kitchencam.relay.media import AccessUnit, StreamInfo
from kitchencam.users import Users

CLIPS = Path(__file__).resolve().parents[2] / "bench" / "clips"
LABELS = {
    entry["clip"].removesuffix(".mp4"): entry
    for entry in json.loads((CLIPS / "labels.json").read_text())
}
POLL_S = 0.02

T = TypeVar("T")


@dataclass(frozen=True)
class Unit:
    """An access unit of a clip with its media time."""

    t: float
    au: AccessUnit


def access_units(name: str, *, keyframes_only: bool = False) -> tuple[list[Unit], StreamInfo]:
    """A labelled clip's pictures as Annex-B access units (as the relay hands them over)."""
    path = CLIPS / f"{name}.mp4"
    units: list[Unit] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = StreamInfo(codec="h264", width=stream.width, height=stream.height)
        bsf = av.BitStreamFilterContext("h264_mp4toannexb", stream)
        for packet in container.demux(stream):
            for out in bsf.filter(packet):
                if out.pts is None or out.size == 0:
                    continue
                if keyframes_only and not out.is_keyframe:
                    continue
                t = float(out.pts * out.time_base)
                units.append(Unit(t, AccessUnit(bytes(out), out.is_keyframe, int(t * 90000), t)))
    return units, info


async def regulator(redis: Redis, name: str = "inspector") -> str:
    """Create a regulator account; return its API token."""
    _, token = await Users(redis).add(name, "regulator", "a long enough password")
    return token


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], what: str, timeout_s: float = 10.0
) -> T:
    """Poll ``probe`` (sync or async) until it gives something other than ``None``/``False``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s}s")
        await asyncio.sleep(POLL_S)


async def news(redis: Redis) -> list[dict[str, Any]]:
    """Every ``kc:transitions`` entry's fields, oldest first, with its id."""
    entries: Any = await redis.xrange("kc:transitions")
    return [dict(fields, id=eid) for eid, fields in entries]
