"""Uptime of a camera, computed from its events (pure).

Uptime over a window is the fraction of the *accountable* time the camera spent ``ok``:

    uptime = time ok / (time ok + time in offline, dark, covered, blurred, frozen or moved)

Time ``unmonitored`` (no relay analysed the camera: the platform's fault) and ``disabled``
(switched off on purpose) is left out of both sides, so it neither helps nor hurts the
restaurant; so is time before the camera was registered. A window with no accountable time
has no uptime (``None``), not 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kitchencam.compliance.states import State

WINDOWS_S: Final = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}

NOT_ACCOUNTABLE: Final = frozenset({State.UNMONITORED, State.DISABLED})


@dataclass(frozen=True, slots=True)
class Change:
    """One state change: at ``t`` the camera went from ``from_state`` to ``to_state``."""

    t: float
    from_state: State
    to_state: State


@dataclass(frozen=True, slots=True)
class Uptime:
    """Uptime over one window, with the seconds it was computed from."""

    ratio: float | None
    ok_s: float
    faulty_s: float
    excluded_s: float
    """Unmonitored or disabled (not counted either way)."""

    def public(self) -> dict[str, float | None]:
        """What the API shows."""
        return {
            "uptime": None if self.ratio is None else round(self.ratio, 6),
            "ok_s": round(self.ok_s, 3),
            "faulty_s": round(self.faulty_s, 3),
            "excluded_s": round(self.excluded_s, 3),
        }


def uptime(
    changes: Sequence[Change],
    *,
    start: float,
    end: float,
    current: State,
    known_since: float,
) -> Uptime:
    """Uptime over ``[start, end]`` from the changes in that window (any order).

    ``current`` is the camera's state now (it tells the state throughout a window without
    changes); ``known_since`` is when the camera was registered (earlier time is not counted).
    """
    ordered = sorted((c for c in changes if start < c.t <= end), key=lambda c: c.t)
    state = ordered[0].from_state if ordered else current
    t = max(start, known_since)
    totals = {"ok": 0.0, "faulty": 0.0, "excluded": 0.0}
    for change in ordered:
        if change.t > t:
            totals[_bucket(state)] += change.t - t
            t = change.t
        state = change.to_state
    if end > t:
        totals[_bucket(state)] += end - t
    accountable = totals["ok"] + totals["faulty"]
    return Uptime(
        ratio=totals["ok"] / accountable if accountable > 0 else None,
        ok_s=totals["ok"],
        faulty_s=totals["faulty"],
        excluded_s=totals["excluded"],
    )


def _bucket(state: State) -> str:
    if state is State.OK:
        return "ok"
    return "excluded" if state in NOT_ACCOUNTABLE else "faulty"
