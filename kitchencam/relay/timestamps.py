"""Pure timestamp validation for demuxed video packets, one validator per stream.

The idea follows Home Assistant's stream worker (``TimestampValidator`` in
``homeassistant/components/stream/worker.py``): judge each packet's decode timestamp against the
last accepted one. Unlike it, `TimestampValidator.check` never raises and never drops on its own:
it returns a typed `TimestampCheck` and leaves the decision (forward, hold, drop, rebase, restart)
to the shell.

Quirks it accepts, seen with FFmpeg's demuxers and parser:

- a multi-slice keyframe arrives as several packets with the same pts and dts; the later ones are
  `TimestampVerdict.SAME_ACCESS_UNIT`, not a non-monotonic step;
- the first of them may have ``pts=None``: with a dts it is checked as usual, and the slices after
  it still count as the same picture; with no dts either it is `TimestampVerdict.UNTIMED` and
  belongs with the next timed packet;
- dts may be missing while pts is present (Matroska's first packets with B-frames): such a packet
  is `TimestampVerdict.PTS_ONLY`, usable, and does not move the decode-order history.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Final

MAX_FORWARD_STEP_S: Final = 10.0
"""A larger forward step is a discontinuity; packets cannot stall this long without a read
timeout restarting the source, so it is a timestamp glitch or a camera restart."""

MAX_BACKWARD_STEP_S: Final = 1.0
"""A backward step up to this long is jitter or a duplicate (drop the packet); a longer one means
the source restarted or its clock wrapped (a discontinuity)."""

MAX_MISSING_DTS_RUN: Final = 8
"""Consecutive packets without dts tolerated. A multi-slice keyframe may lead with one untimed
packet and Matroska starts with a few pts-only ones; a source that never sends dts cannot be
checked and is reported as fatal past this many packets."""


class TimestampVerdict(StrEnum):
    """What a packet's timestamps say about it."""

    OK = "ok"
    """The first timed packet, or a forward dts step within limits."""
    SAME_ACCESS_UNIT = "same_access_unit"
    """Same dts and pts as the last packet: another slice of the same picture."""
    PTS_ONLY = "pts_only"
    """No dts but a pts: forward it; its decode order cannot be checked."""
    UNTIMED = "untimed"
    """Neither pts nor dts: hold it for the next timed packet (the first slice of a keyframe)."""
    MISSING_DTS_TOO_LONG = "missing_dts_too_long"
    """More than the allowed run of packets without dts: the source cannot be timed."""
    NON_MONOTONIC = "non_monotonic"
    """A small dts step backwards, or a repeated dts for another picture: drop the packet."""
    PTS_BEFORE_DTS = "pts_before_dts"
    """Presentation before decoding is impossible: drop the packet."""
    FORWARD_JUMP = "forward_jump"
    """A dts step forward beyond the limit: a discontinuity; checking continues from here."""
    BACKWARD_JUMP = "backward_jump"
    """A dts step backward beyond the limit: a restart or wrap; checking continues from here."""


_USABLE: Final = frozenset(
    {
        TimestampVerdict.OK,
        TimestampVerdict.SAME_ACCESS_UNIT,
        TimestampVerdict.PTS_ONLY,
        TimestampVerdict.FORWARD_JUMP,
        TimestampVerdict.BACKWARD_JUMP,
    }
)
_ADVANCING: Final = _USABLE - {TimestampVerdict.PTS_ONLY}
_DISCONTINUITIES: Final = frozenset({TimestampVerdict.FORWARD_JUMP, TimestampVerdict.BACKWARD_JUMP})


@dataclass(frozen=True, slots=True)
class TimestampCheck:
    """The verdict on one packet, with the numbers behind it for logs and metrics."""

    verdict: TimestampVerdict
    timestamp: int | None
    """The timestamp checked, in stream time base: dts, or pts when dts is missing."""
    previous: int | None
    """The last accepted dts before this packet, if any."""
    step_s: float | None
    """``dts - previous`` in seconds (negative backwards), when both are known."""
    missing_dts_run: int
    """Consecutive packets without dts, this one included (0 when it has a dts)."""

    @property
    def usable(self) -> bool:
        """True if the packet can be forwarded with its own timestamps."""
        return self.verdict in _USABLE

    @property
    def discontinuity(self) -> bool:
        """True if timing restarts here: the shell should rebase its output timestamps."""
        return self.verdict in _DISCONTINUITIES

    @property
    def fatal(self) -> bool:
        """True if the source should be restarted: it gives no checkable timestamps."""
        return self.verdict is TimestampVerdict.MISSING_DTS_TOO_LONG

    def describe(self) -> str:
        """One line for a log message."""
        if self.missing_dts_run:
            shown = "no pts" if self.timestamp is None else f"pts {self.timestamp}"
            return f"{self.verdict}: no dts, {shown} ({self.missing_dts_run} in a row)"
        if self.previous is None or self.step_s is None:
            return f"{self.verdict}: dts {self.timestamp}"
        return f"{self.verdict}: dts {self.previous} -> {self.timestamp} ({self.step_s:+.3f} s)"


@dataclass(frozen=True, slots=True)
class TimestampLimits:
    """Thresholds for `TimestampValidator`, in seconds and packets."""

    max_forward_step_s: float = MAX_FORWARD_STEP_S
    max_backward_step_s: float = MAX_BACKWARD_STEP_S
    max_missing_dts_run: int = MAX_MISSING_DTS_RUN


class TimestampValidator:
    """Checks the timestamps of one stream's packets in demux order; pure, never raises.

    Fed from the stream's demux thread only.
    """

    def __init__(self, time_base: Fraction, limits: TimestampLimits | None = None) -> None:
        """Validate packets whose timestamps count ``time_base`` seconds (e.g. 1/90000)."""
        if time_base <= 0:
            raise ValueError(f"time_base must be positive, not {time_base}")
        self._time_base = time_base
        self._limits = limits or TimestampLimits()
        self._last_dts: int | None = None
        self._last_pts: int | None = None
        self._missing_dts_run = 0

    @property
    def last_dts(self) -> int | None:
        """The last accepted dts, or None before the first."""
        return self._last_dts

    def reset(self) -> None:
        """Forget all history, e.g. after reopening the source."""
        self._last_dts = self._last_pts = None
        self._missing_dts_run = 0

    def check(self, pts: int | None, dts: int | None) -> TimestampCheck:
        """Judge one packet's pts and dts (either may be None) and update the history."""
        previous = self._last_dts
        if dts is None:
            self._missing_dts_run += 1
            verdict = self._judge_missing_dts(pts)
            return TimestampCheck(verdict, pts, previous, None, self._missing_dts_run)
        self._missing_dts_run = 0
        step_s = None if previous is None else float((dts - previous) * self._time_base)
        verdict = self._judge(pts, dts, step_s)
        if verdict in _ADVANCING:
            # A later slice may lack the pts its first slice had: keep the known one.
            if verdict is not TimestampVerdict.SAME_ACCESS_UNIT or pts is not None:
                self._last_pts = pts
            self._last_dts = dts
        return TimestampCheck(verdict, dts, previous, step_s, 0)

    def _judge_missing_dts(self, pts: int | None) -> TimestampVerdict:
        """Return the verdict for a packet without dts."""
        if self._missing_dts_run > self._limits.max_missing_dts_run:
            return TimestampVerdict.MISSING_DTS_TOO_LONG
        return TimestampVerdict.UNTIMED if pts is None else TimestampVerdict.PTS_ONLY

    def _judge(self, pts: int | None, dts: int, step_s: float | None) -> TimestampVerdict:
        """Return the verdict for a packet with a dts, before the history is updated."""
        if pts is not None and pts < dts:
            return TimestampVerdict.PTS_BEFORE_DTS
        if step_s is None:
            return TimestampVerdict.OK
        if dts == self._last_dts:
            if pts is None or self._last_pts is None or pts == self._last_pts:
                return TimestampVerdict.SAME_ACCESS_UNIT
            return TimestampVerdict.NON_MONOTONIC
        if step_s > self._limits.max_forward_step_s:
            return TimestampVerdict.FORWARD_JUMP
        if step_s < -self._limits.max_backward_step_s:
            return TimestampVerdict.BACKWARD_JUMP
        return TimestampVerdict.OK if step_s > 0 else TimestampVerdict.NON_MONOTONIC
