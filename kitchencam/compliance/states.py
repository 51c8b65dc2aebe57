"""Camera states from evidence, with hysteresis: the pure core of the compliance checker.

Evidence is a timestamped value: a sampled frame's measures, connection evidence from the
ingest supervisor, lease evidence from the relay, a switch from the restaurant or a regulator,
or a clock tick. :func:`grade` turns a frame's measures into a grade per condition (bad, good,
grey in between, or unknown); :func:`step` folds one piece of evidence into a camera's
:class:`Memory` and returns the new memory, the state transitions it caused, and which parts of
the baseline may learn from it. :class:`CameraMonitor` wires analysers, baseline and state
machine together for one camera.

A condition is raised only after bad evidence has held for its ``*_raise_s`` and cleared only
after good evidence has held for its ``*_clear_s``; grey evidence (between the bad and good
thresholds) or missing evidence restarts both clocks. When several conditions are raised the
state is the first of ``PRIORITY``. ``unmonitored`` (no relay holds the camera: our fault) and
``disabled`` override everything and are never blamed on the restaurant.

``ok`` is a verdict too, never a default: a held camera with nothing raised is ``ok`` only once
a sampled picture was checked and found good (:attr:`Memory.verified`), and stays
``unmonitored`` (cause ``awaiting_evidence``: not judged yet, the restaurant is blamed for
nothing) until then. Losing the lease, being switched on, or going ``offline`` forgets that
verdict; a relay taking over a camera whose evidence is recent (a hand-over) keeps it.

Times are seconds on any clock the caller keeps consistent per camera (wall clock in the
checker, media time in ``kitchencam analyze``). Nothing here does I/O or reads a clock; every
function runs on the caller's thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

import numpy as np

from kitchencam.compliance.analysers import (
    SMOOTH_SHARPNESS_RATIO,
    FrameMeasures,
    Gray,
    ReferenceView,
    Signature,
    Working,
    analyse,
    reference_view,
    signature,
    to_working,
)
from kitchencam.compliance.baseline import Baseline


class State(StrEnum):
    """What regulators see for a camera."""

    OK = "ok"
    OFFLINE = "offline"
    DARK = "dark"
    COVERED = "covered"
    BLURRED = "blurred"
    FROZEN = "frozen"
    MOVED = "moved"
    UNMONITORED = "unmonitored"
    DISABLED = "disabled"


class Condition(StrEnum):
    """A fault of the camera that evidence can raise; each has a state of the same name."""

    OFFLINE = "offline"
    DARK = "dark"
    COVERED = "covered"
    BLURRED = "blurred"
    FROZEN = "frozen"
    MOVED = "moved"


PRIORITY: Final = (
    Condition.OFFLINE,
    Condition.DARK,
    Condition.COVERED,
    Condition.BLURRED,
    Condition.FROZEN,
    Condition.MOVED,
)
"""When several conditions are raised the state is the first: a camera that shows nothing
(offline, dark, covered) cannot be judged blurred, frozen or moved."""

FRAME_CONDITIONS: Final = PRIORITY[1:]


class Grade(StrEnum):
    """What one sample says about one condition."""

    BAD = "bad"
    GREY = "grey"
    """Between the bad and the good threshold: restarts both clocks, raises and clears nothing."""
    GOOD = "good"
    UNKNOWN = "unknown"
    """Cannot be judged (no reference, too little texture, masked by a worse condition);
    treated like grey."""


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """Durations (seconds) and thresholds of the compliance rules, with why each default.

    Delays assume one sample about every 2 s (keyframes of a 1-2 s GOP). The worst-case
    detection delay of a condition is one sample interval (the onset falls just after a
    sample) plus its raise time; ``frozen`` needs one more interval for a second identical
    picture, but its clock starts at the first one.
    """

    offline_raise_s: float = 6.0
    """From the last packet (the supervisor reports stalls with the time of the last packet),
    so with a supervisor read timeout of at most 5 s and a tick every second ``offline`` is
    raised 6-7 s after the last packet (target 10 s); camera reboots and network hiccups
    shorter than 6 s raise nothing."""
    offline_clear_s: float = 4.0
    """Media must flow for 4 s (two samples or heartbeats) before ``offline`` clears."""
    dark_raise_s: float = 4.0
    """Three samples 2 s apart: onset to flag at most 6 s at a 2 s interval, 8 s at 4 s
    (target 10 s); a light switched off for less than 4 s, or a person blocking the lens for 2 s,
    raises nothing."""
    dark_clear_s: float = 6.0
    """Lights must be back for 6 s: flickering fluorescent tubes do not toggle the state."""
    covered_raise_s: float = 4.0
    """As ``dark``: target 10 s, and a hand or a person passing the lens for 2 s (at most
    2 s of bad samples) is never flagged."""
    covered_clear_s: float = 6.0
    blurred_raise_s: float = 10.0
    """Steam from a pot comes and goes within seconds; defocus and grease stay. Flag after 10 s:
    at most 12 s (2 s interval) or 16 s (4 s) after onset, target 20 s."""
    blurred_clear_s: float = 10.0
    frozen_raise_s: float = 10.0
    """Counted from the first of the identical pictures: at most 12 s (2 s interval) or 16 s
    (4 s) after the freeze, target 20 s; five samples in a row must agree."""
    frozen_clear_s: float = 6.0
    moved_raise_s: float = 12.0
    """People block parts of the view for seconds at a time; a turned camera stays turned.
    At most 14 s (2 s interval) or 16 s (4 s) after onset, target 20 s."""
    moved_clear_s: float = 10.0
    max_sample_gap_s: float = 12.0
    """Samples further apart than this do not continue a run: a condition must be seen, not
    assumed across a gap in the evidence."""
    resume_gap_s: float = 6.0
    """A relay that takes a camera over keeps the previous relay's ``ok`` verdict only when
    that relay's last evidence is at most this old: a planned hand-over takes 1-3 s (stop,
    release, the next claim scan), so an ``ok`` camera stays ``ok`` through it; a dead relay's
    cameras come back after the lease TTL (8 s) or more, and are checked afresh. Equal to
    ``offline_raise_s``: no older than an ``ok`` camera may go without packets anyway."""

    dark_p98_bad: float = 40.0
    """Dark when 98 % of the picture is below luma 40 (about 11 % above video black): nothing
    but specks (an exit sign, a standby LED) shows. Lights dimmed by 40 % leave a normally lit
    kitchen far above this (p98 around 130)."""
    dark_p98_good: float = 48.0

    covered_detail_bad: float = 0.3
    """Covered when mid-scale detail fell below 30 % of the baseline's (a cloth, a hand or
    translucent tape keep 3-13 %; heavy steam keeps about a third and is ``blurred``)..."""
    covered_edges_bad: float = 0.25
    """...and edges below 25 % of the baseline's. Both are normalised by brightness, so
    dimmed lights and auto-exposure do not move them."""
    covered_good: float = 0.5
    """Uncovered when detail or edges are back to half the baseline."""
    covered_min_baseline_detail: float = 0.015
    """Below this the scene itself is nearly featureless (a tiled wall: 0.007; a kitchen 0.1):
    covering it cannot be told from the scene, so only the absolute test below applies, and
    not even that below twice ``featureless_detail``. Such a camera covered shows up as
    ``moved`` instead, when its reference view has structure enough."""
    featureless_detail: float = 0.004
    featureless_edges: float = 0.0005
    """Covered whatever the baseline when the picture has no edges and almost no detail (a
    hand on the lens; also used before the baseline has warmed up)."""

    blurred_bad: float = 0.35
    """Sharpness score: (ratio - 0.25) / (baseline ratio - 0.25), 1 for the normal picture and
    0 for a smooth one. Blurred below 0.35 (a defocus of about 1.5 px at 640 x 360, 3 px at
    720p); an infrared night picture, a little softer, scores about 0.7."""
    blurred_good: float = 0.6
    blurred_min_textured: float = 0.2
    """Sharpness is judged only if at least 20 % of the baseline picture's tiles are textured."""

    frozen_noise_ratio: float = 0.35
    """Frozen when the bulk of the picture changed less than 35 % of the camera's noise floor
    since the previous sample (a live still scene changes by about one noise floor)..."""
    frozen_max_change: float = 0.25
    """...and less than 0.25 grey levels in any case: a floor learned at night must not make a
    quieter daytime picture look frozen. An exactly repeating picture is frozen regardless."""
    frozen_min_informative: float = 0.2
    """At least 20 % of the tiles must be able to show change (not clipped black or white)."""
    frozen_moving_good: float = 0.25
    """Alive when a quarter of the tiles moved beyond three noise floors."""

    moved_bad: float = 0.3
    """Moved when similarity to the reference is below 0.3 (another scene or a camera turned
    away scores 0-0.2, a covered lens about 0; the registered view 0.8-1 with people about,
    about 0.85 in infrared, 0.65 tilted by 3 degrees, 0.25 with a person filling the view)..."""
    moved_bad_relative: float = 0.5
    """...and below half the camera's typical similarity (a busy kitchen may typically
    score only 0.5)."""
    moved_good: float = 0.5
    moved_good_relative: float = 0.75
    moved_min_structure: float = 0.05
    """A reference view with less structure than this (a uniform picture: 0.02; a tiled wall
    0.25, a kitchen 0.7) cannot be matched: ``moved`` unknown."""

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")

    def raise_after(self, condition: Condition) -> float:
        """Seconds a condition must hold before it is raised."""
        value: float = getattr(self, f"{condition.value}_raise_s")
        return value

    def clear_after(self, condition: Condition) -> float:
        """Seconds of good evidence before a raised condition clears."""
        value: float = getattr(self, f"{condition.value}_clear_s")
        return value


# --- evidence ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameSample:
    """A sampled, analysed frame: media flows, and this is what the picture showed."""

    t: float
    measures: FrameMeasures
    previous_t: float | None = None
    """Time of the sample ``measures.change`` compares with (a frozen picture has been frozen
    since then at least)."""


@dataclass(frozen=True, slots=True)
class MediaFlowing:
    """Heartbeat from the relay: packets are arriving (no picture analysed)."""

    t: float


class Problem(StrEnum):
    """What the ingest supervisor reports about a camera it cannot get media from."""

    CANNOT_CONNECT = "cannot_connect"
    NO_MEDIA = "no_media"
    STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class ConnectionProblem:
    """The supervisor cannot get media: refused, timed out, connected but silent, stalled."""

    t: float
    problem: Problem
    reason: str = ""
    """Human-readable, already free of credentials."""
    since: float | None = None
    """Time of the last packet, if there was one: ``offline`` is counted from there."""


@dataclass(frozen=True, slots=True)
class LeaseHeld:
    """A relay holds the camera's lease: it is monitored."""

    t: float


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """No relay holds the camera (relay died, capacity): ``unmonitored``, never ``offline``."""

    t: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Disabled:
    """The camera was switched off by its restaurant or a regulator."""

    t: float
    by: str = ""


@dataclass(frozen=True, slots=True)
class Enabled:
    """The camera was switched back on; it starts afresh."""

    t: float
    by: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes with no new evidence (lets ``offline`` be raised on time)."""

    t: float


Evidence = (
    FrameSample
    | MediaFlowing
    | ConnectionProblem
    | LeaseHeld
    | LeaseLost
    | Disabled
    | Enabled
    | Tick
)


# --- grading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """Grades of one frame sample, with the relative values they were judged on."""

    grades: Mapping[Condition, Grade]
    values: Mapping[str, float]


def grade(measures: FrameMeasures, baseline: Baseline, config: Config) -> Verdict:
    """Grade one frame's measures against the camera's baseline (no masking, no time)."""
    values: dict[str, float] = {}
    grades = {
        Condition.DARK: _grade_dark(measures, config),
        Condition.COVERED: _grade_covered(measures, baseline, config, values),
        Condition.BLURRED: _grade_blurred(measures, baseline, config, values),
        Condition.FROZEN: _grade_frozen(measures, baseline, config, values),
        Condition.MOVED: _grade_moved(measures, baseline, config, values),
    }
    return Verdict(grades=grades, values=values)


def _grade_dark(m: FrameMeasures, c: Config) -> Grade:
    p98 = m.luminance.p98
    if p98 < c.dark_p98_bad:
        return Grade.BAD
    return Grade.GOOD if p98 >= c.dark_p98_good else Grade.GREY


def _grade_covered(m: FrameMeasures, b: Baseline, c: Config, values: dict[str, float]) -> Grade:
    t = m.texture
    featureless = t.detail < c.featureless_detail and t.edge_density < c.featureless_edges
    if not b.ready:
        return Grade.BAD if featureless else Grade.GOOD
    if b.detail < c.covered_min_baseline_detail:
        # A plain scene: only a picture far more uniform than the scene itself is covered.
        if b.detail < 2 * c.featureless_detail:
            return Grade.UNKNOWN
        return Grade.BAD if featureless else Grade.GOOD
    detail_ratio = t.detail / b.detail
    edges_ratio = t.edge_density / b.edge_density if b.edge_density > 0 else 0.0
    values["covered.detail_ratio"] = round(detail_ratio, 4)
    values["covered.edges_ratio"] = round(edges_ratio, 4)
    if featureless or (detail_ratio < c.covered_detail_bad and edges_ratio < c.covered_edges_bad):
        return Grade.BAD
    if detail_ratio >= c.covered_good or edges_ratio >= c.covered_good:
        return Grade.GOOD
    return Grade.GREY


def _grade_blurred(m: FrameMeasures, b: Baseline, c: Config, values: dict[str, float]) -> Grade:
    span = b.sharpness - SMOOTH_SHARPNESS_RATIO
    if not b.ready or b.textured_fraction < c.blurred_min_textured or span < 0.05:
        return Grade.UNKNOWN
    score = (m.sharpness.ratio - SMOOTH_SHARPNESS_RATIO) / span
    values["blurred.score"] = round(score, 4)
    if score < c.blurred_bad:
        return Grade.BAD
    return Grade.GOOD if score >= c.blurred_good else Grade.GREY


def _grade_frozen(m: FrameMeasures, b: Baseline, c: Config, values: dict[str, float]) -> Grade:
    if m.repeated:
        values["frozen.repeated"] = 1.0
        return Grade.BAD
    change = m.change
    if change is None or change.informative_fraction < c.frozen_min_informative:
        return Grade.UNKNOWN
    bad_below = min(c.frozen_noise_ratio * b.noise_floor, c.frozen_max_change)
    values["frozen.threshold"] = round(bad_below, 4)
    if change.bulk < bad_below:
        return Grade.BAD
    if change.bulk >= 2 * bad_below or change.moving_fraction >= c.frozen_moving_good:
        return Grade.GOOD
    return Grade.GREY


def _grade_moved(m: FrameMeasures, b: Baseline, c: Config, values: dict[str, float]) -> Grade:
    s = m.similarity
    if s is None or s.reference_structure < c.moved_min_structure:
        return Grade.UNKNOWN
    bad_below, good_from = c.moved_bad, c.moved_good
    if b.similarity_ready:
        bad_below = min(bad_below, c.moved_bad_relative * b.similarity)
        good_from = min(good_from, c.moved_good_relative * b.similarity)
    values["moved.threshold"] = round(bad_below, 4)
    if s.score < bad_below:
        return Grade.BAD
    return Grade.GOOD if s.score >= good_from else Grade.GREY


# --- the machine -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Track:
    """Hysteresis clocks of one condition."""

    active: bool = False
    """Raised."""
    bad_since: float | None = None
    """Start of the current run of bad evidence."""
    good_since: float | None = None
    """Start of the current run of good evidence."""


@dataclass(frozen=True, slots=True)
class Memory:
    """Everything the state machine remembers about one camera; JSON-serialisable."""

    state: State = State.UNMONITORED
    since: float | None = None
    """When the current state was entered (``None``: never changed yet)."""
    enabled: bool = True
    held: bool = False
    """A relay holds the camera's lease."""
    last_t: float | None = None
    """Time of the latest evidence taken in; older evidence is ignored."""
    last_sample_t: float | None = None
    last_media_t: float | None = None
    problem: str = ""
    """The supervisor's latest report of why it gets no media (for the ``offline`` event)."""
    verified: bool = False
    """A sampled picture was checked and found good since the relay took the camera (or since
    it was switched on, or came back from ``offline``): only then can the camera be ``ok``."""
    tracks: Mapping[Condition, Track] = field(
        default_factory=lambda: {c: Track() for c in PRIORITY}
    )

    def pending(self) -> bool:
        """Whether any condition is raised or on its way to being raised."""
        return any(t.active or t.bad_since is not None for t in self.tracks.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "state": self.state.value,
            "since": self.since,
            "enabled": self.enabled,
            "held": self.held,
            "last_t": self.last_t,
            "last_sample_t": self.last_sample_t,
            "last_media_t": self.last_media_t,
            "problem": self.problem,
            "verified": self.verified,
            "tracks": {
                c.value: [t.active, t.bad_since, t.good_since] for c, t in self.tracks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Memory:
        """Rebuild from :meth:`to_dict` output; ``ValueError`` if malformed."""
        try:
            tracks = {c: Track() for c in PRIORITY}
            for name, (active, bad, good) in data["tracks"].items():
                tracks[Condition(name)] = Track(bool(active), _opt(bad), _opt(good))
            return cls(
                state=State(data["state"]),
                since=_opt(data["since"]),
                enabled=bool(data["enabled"]),
                held=bool(data["held"]),
                last_t=_opt(data["last_t"]),
                last_sample_t=_opt(data["last_sample_t"]),
                last_media_t=_opt(data["last_media_t"]),
                problem=str(data["problem"]),
                verified=bool(data.get("verified", False)),
                tracks=tracks,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed state memory: {err}") from err


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a camera's state: the content of one durable event."""

    t: float
    """Time of the evidence that decided it (its frame is the evidence snapshot)."""
    from_state: State
    to_state: State
    cause: str
    """``offline``, ``dark``, ..., ``moved`` when that condition is (still) raised; ``cleared``
    back to ``ok``; ``checked`` to ``ok`` from ``unmonitored`` (the first good picture);
    ``awaiting_evidence`` to ``unmonitored`` while held (no good picture checked yet);
    ``lease_lost``, ``lease_held``, ``disabled``, ``enabled``."""
    detail: str
    """One human sentence: how long it held, the supervisor's reason, who switched it."""
    measures: Mapping[str, float]
    """The measured (and judged) values of the deciding evidence."""


@dataclass(frozen=True, slots=True)
class Learning:
    """Which parts of the baseline may learn from this sample."""

    scene: bool = False
    similarity: bool = False
    noise: bool = False

    def __bool__(self) -> bool:
        return self.scene or self.similarity or self.noise


@dataclass(frozen=True, slots=True)
class Step:
    """The result of taking in one piece of evidence."""

    memory: Memory
    transitions: tuple[Transition, ...] = ()
    verdict: Verdict | None = None
    learning: Learning = Learning()


def step(memory: Memory, evidence: Evidence, baseline: Baseline, config: Config) -> Step:
    """Take in one piece of evidence: new memory, transitions, and what the baseline may learn."""
    t = evidence.t
    if memory.last_t is not None and t < memory.last_t:
        return Step(memory)  # stale: the checker may see evidence out of order; ignore it
    tracks = dict(memory.tracks)
    mem = replace(memory, last_t=t)
    verdict: Verdict | None = None
    grades: dict[Condition, Grade] = {}
    onsets: dict[Condition, float] = {}
    cause, detail = "", ""
    measures: dict[str, float] = {}
    frame: FrameMeasures | None = None
    match evidence:
        case Disabled(by=by):
            mem = replace(mem, enabled=False, tracks=_fresh())
            cause, detail = "disabled", f"switched off by {by}" if by else "switched off"
            return _finish(memory, mem, t, cause, detail, measures)
        case Enabled(by=by):
            mem = replace(mem, enabled=True, tracks=_fresh(), last_sample_t=None, verified=False)
            cause, detail = "enabled", f"switched on by {by}" if by else "switched on"
            return _finish(memory, mem, t, cause, detail, measures)
        case LeaseLost(reason=reason):
            # Keep what is raised (only evidence clears a flag) but stop every clock.
            kept = {c: Track(active=tr.active) for c, tr in tracks.items()}
            mem = replace(mem, held=False, tracks=kept, last_sample_t=None, verified=False)
            detail = reason or "no relay holds the camera"
            return _finish(memory, mem, t, "lease_lost", detail, measures)
        case LeaseHeld():
            mem = _take_over(memory, mem, t, config)
            if _target(mem) is State.UNMONITORED:
                cause = "awaiting_evidence"
                detail = "a relay holds the camera; no picture checked yet"
            else:
                cause, detail = "lease_held", "a relay holds the camera"
            return _finish(memory, mem, t, cause, detail, measures)
    if not (mem.enabled and mem.held):
        return Step(mem)  # nobody should be sending this; a fenced-out relay may still be
    match evidence:
        case FrameSample(measures=frame, previous_t=previous_t):
            if mem.last_sample_t is not None and t - mem.last_sample_t > config.max_sample_gap_s:
                for c in FRAME_CONDITIONS:
                    tracks[c] = replace(tracks[c], bad_since=None, good_since=None)
            verdict = grade(frame, baseline, config)
            grades = _mask(verdict.grades, tracks)
            grades[Condition.OFFLINE] = Grade.GOOD
            if previous_t is not None and t - previous_t <= config.max_sample_gap_s:
                onsets[Condition.FROZEN] = previous_t
            verified = mem.verified or _fine(grades)
            mem = replace(mem, last_sample_t=t, last_media_t=t, verified=verified)
        case MediaFlowing():
            grades[Condition.OFFLINE] = Grade.GOOD
            mem = replace(mem, last_media_t=t)
        case ConnectionProblem(problem=problem, reason=reason, since=since):
            grades[Condition.OFFLINE] = Grade.BAD
            onset = t if since is None else min(since, t)
            if mem.last_media_t is not None:
                onset = max(onset, mem.last_media_t)
            onsets[Condition.OFFLINE] = onset
            detail = f"{problem.value}: {reason}" if reason else problem.value
            mem = replace(mem, problem=detail)
            measures = {"offline.since": onset}
        case Tick():
            run = tracks[Condition.OFFLINE].bad_since
            if run is not None:
                grades[Condition.OFFLINE] = Grade.BAD  # the reported problem goes on
                detail = mem.problem
                measures = {"offline.since": run}
    raised: list[Condition] = []
    cleared: list[Condition] = []
    for c, g in grades.items():
        before = tracks[c]
        after = _advance(before, g, t, onsets.get(c, t), config, c)
        tracks[c] = after
        if after.active and not before.active:
            raised.append(c)
        elif before.active and not after.active:
            cleared.append(c)
    mem = replace(mem, tracks=tracks)
    offline_run = tracks[Condition.OFFLINE].bad_since
    if "offline.since" in measures and offline_run is not None:
        measures = {"offline.since": offline_run}  # the run, not this report, started it
    if Condition.OFFLINE in raised:
        mem = replace(mem, verified=False)  # back from offline only on a good picture
    learning = Learning()
    if verdict is not None:
        learning = _learning(mem, grades)
    target = _target(mem)
    if target == memory.state:
        return Step(mem, (), verdict, learning)
    if frame is not None and verdict is not None:
        measures = {**frame.as_dict(), **verdict.values}
    if target in _CONDITION_STATES:
        condition = Condition(target.value)
        cause = condition.value
        run = tracks[condition].bad_since
        held = f" for {t - run:.0f} s" if run is not None else ""
        if condition in raised:
            text = f"{condition.value}{held}"
        else:
            text = f"{memory.state.value} cleared; {condition.value} still raised"
        detail = f"{text} ({detail})" if detail else text
    elif target == State.OK and memory.state == State.UNMONITORED:
        cause, detail = "checked", "a sampled picture was checked and found good"
    elif target == State.OK:
        cause = "cleared"
        names = ", ".join(c.value for c in cleared) or memory.state.value
        detail = f"{names} cleared after good evidence"
    elif target == State.UNMONITORED:
        names = ", ".join(c.value for c in cleared) or memory.state.value
        cause, detail = "awaiting_evidence", f"{names} cleared; no good picture checked yet"
    return Step(
        replace(mem, state=target, since=t),
        (Transition(t, memory.state, target, cause, detail, measures),),
        verdict,
        learning,
    )


_CONDITION_STATES: Final = frozenset(State(c.value) for c in PRIORITY)


def _fresh() -> dict[Condition, Track]:
    return {c: Track() for c in PRIORITY}


def _fine(grades: Mapping[Condition, Grade]) -> bool:
    """A picture that verifies a camera: nothing in it is bad. The same bar an ``ok`` camera
    is held to (grey raises nothing); what cannot be judged yet (no reference view, a cold
    baseline, no previous picture) is judged by its own rule as soon as it can be."""
    return all(g is not Grade.BAD for g in grades.values())


def _take_over(old: Memory, mem: Memory, t: float, config: Config) -> Memory:
    """A relay holds the camera. Over a memory another relay (or this one before a restart)
    left held, stop the clocks of whatever was pending (evidence must be seen, not assumed
    across the gap), keep raised flags, and keep the ``ok`` verdict only if that relay's last
    evidence is recent (a hand-over, ``resume_gap_s``)."""
    if not old.held:
        return replace(mem, held=True)
    kept = {c: Track(active=tr.active) for c, tr in mem.tracks.items()}
    recent = old.last_t is not None and t - old.last_t <= config.resume_gap_s
    return replace(mem, tracks=kept, last_sample_t=None, verified=old.verified and recent)


def _finish(
    old: Memory, mem: Memory, t: float, cause: str, detail: str, measures: Mapping[str, float]
) -> Step:
    """Close a lease or switch step: move to the target state if it changed."""
    target = _target(mem)
    if target == old.state:
        return Step(mem)
    return Step(
        replace(mem, state=target, since=t),
        (Transition(t, old.state, target, cause, detail, dict(measures)),),
    )


def _target(mem: Memory) -> State:
    """The state the memory calls for: switches and leases first, then priority."""
    if not mem.enabled:
        return State.DISABLED
    if not mem.held:
        return State.UNMONITORED
    for c in PRIORITY:
        if mem.tracks[c].active:
            return State(c.value)
    return State.OK if mem.verified else State.UNMONITORED


def _mask(
    grades: Mapping[Condition, Grade], tracks: Mapping[Condition, Track]
) -> dict[Condition, Grade]:
    """A worse condition that is bad, or raised and not yet good, hides the ones after it:
    a dark picture also looks covered, blurred, frozen and moved, and must not raise them."""
    out: dict[Condition, Grade] = {}
    hidden = False
    for c in FRAME_CONDITIONS:
        g = grades[c]
        out[c] = Grade.UNKNOWN if hidden else g
        if (
            not hidden
            and c in _MASKING
            and (g == Grade.BAD or (tracks[c].active and g != Grade.GOOD))
        ):
            hidden = True
    return out


_MASKING: Final = frozenset({Condition.DARK, Condition.COVERED, Condition.BLURRED})
"""Conditions that hide the ones after them. ``frozen`` does not hide ``moved``: a frozen
picture of another scene is both."""


def _advance(track: Track, g: Grade, t: float, onset: float, config: Config, c: Condition) -> Track:
    """Move one condition's clocks with one grade; raise or clear when a clock has run out."""
    if g == Grade.BAD:
        bad_since = track.bad_since if track.bad_since is not None else onset
        active = track.active or t - bad_since >= config.raise_after(c)
        return Track(active=active, bad_since=bad_since, good_since=None)
    if g == Grade.GOOD:
        good_since = track.good_since if track.good_since is not None else t
        if track.active and t - good_since >= config.clear_after(c):
            return Track()
        return Track(active=track.active, bad_since=None, good_since=good_since)
    return Track(active=track.active)


def _learning(mem: Memory, grades: Mapping[Condition, Grade]) -> Learning:
    """The baseline learns only from a good sample of a camera that is ``ok`` with nothing
    pending; each part only when the conditions it judges are good."""
    if mem.state != State.OK or mem.pending():
        return Learning()
    ok = {c for c, g in grades.items() if g == Grade.GOOD}
    visible = Condition.DARK in ok and Condition.COVERED in ok
    return Learning(
        scene=visible and grades[Condition.BLURRED] in (Grade.GOOD, Grade.UNKNOWN),
        similarity=visible and Condition.MOVED in ok,
        noise=visible and grades[Condition.FROZEN] in (Grade.GOOD, Grade.GREY),
    )


# --- one camera --------------------------------------------------------------------------

RECENT_SIGNATURES: Final = 30
"""Signatures kept to recognise an exactly repeating picture: one minute at 2 s per sample."""


class CameraMonitor:
    """One camera's compliance core: analysers, baseline and state machine wired together.

    Pure (no I/O, no clock) but stateful: it keeps the previous working frame and the recent
    signatures. Not thread-safe; call it from the one worker thread that analyses this camera,
    and persist ``memory`` and ``baseline`` (both serialise to dicts) as they change.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        baseline: Baseline | None = None,
        memory: Memory | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        self.baseline = baseline if baseline is not None else Baseline()
        self.memory = memory if memory is not None else Memory()
        self._reference: ReferenceView | None = None
        self._previous: Working | None = None
        self._previous_t: float | None = None
        self._recent: deque[Signature] = deque(maxlen=RECENT_SIGNATURES)

    @property
    def state(self) -> State:
        """The camera's current state."""
        return self.memory.state

    def approve_reference(self, frame: Gray | Working) -> None:
        """Use ``frame`` (a luma plane or a working frame) as the approved reference view."""
        self._reference = reference_view(_as_working(frame))
        self.baseline = self.baseline.without_similarity()

    def sample(self, t: float, frame: Gray | Working) -> Step:
        """Analyse one sampled frame (a luma plane or a working frame) taken at ``t``."""
        if self.memory.last_t is not None and t < self.memory.last_t:
            return Step(self.memory)
        working = _as_working(frame)
        previous_t = self._previous_t
        if previous_t is None or t - previous_t > self.config.max_sample_gap_s:
            previous_t = None
        current = signature(working)
        measures = analyse(
            working,
            previous=self._previous if previous_t is not None else None,
            noise_floor=self.baseline.noise_floor,
            reference=self._reference,
            recent=self._recent,
            current_signature=current,
        )
        result = self.observe(FrameSample(t, measures, previous_t))
        self._previous, self._previous_t = working, t
        self._recent.append(current)
        return result

    def observe(self, evidence: Evidence) -> Step:
        """Take in one piece of evidence; the baseline learns what the machine allows."""
        result = step(self.memory, evidence, self.baseline, self.config)
        self.memory = result.memory
        if result.learning and isinstance(evidence, FrameSample):
            learning = result.learning
            self.baseline = self.baseline.learn(
                evidence.measures,
                scene=learning.scene,
                similarity=learning.similarity,
                noise=learning.noise,
            )
        if isinstance(evidence, LeaseLost | Disabled | Enabled):
            self._previous, self._previous_t = None, None
            self._recent.clear()
        return result


def _as_working(frame: Gray | Working) -> Working:
    """Luma planes (uint8) are reduced with ``to_working``; working frames pass through."""
    if frame.dtype == np.uint8:
        return to_working(frame.astype(np.uint8, copy=False))
    return frame.astype(np.float32, copy=False)
