"""The state machine: literal timelines of evidence, each condition raised within its target,
hysteresis, priority, leases and switches, and the hard negatives that must raise nothing.

The first part drives :func:`step` with literal measures; the second drives a
:class:`CameraMonitor` with synthetic camera frames end to end through the analysers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kitchencam.compliance.analysers import FrameMeasures
from kitchencam.compliance.baseline import Baseline
from kitchencam.compliance.states import (
    CameraMonitor,
    Condition,
    Config,
    ConnectionProblem,
    Disabled,
    Enabled,
    Evidence,
    FrameSample,
    Grade,
    LeaseHeld,
    LeaseLost,
    MediaFlowing,
    Memory,
    Problem,
    State,
    Tick,
    Transition,
    grade,
    step,
)

CONFIG = Config()

TARGET_S = {
    Condition.OFFLINE: 10.0,
    Condition.DARK: 10.0,
    Condition.COVERED: 10.0,
    Condition.BLURRED: 20.0,
    Condition.FROZEN: 20.0,
    Condition.MOVED: 20.0,
}
"""Detection targets from the issue: offline within 10 s of the last packet, dark and covered
within 10 s of onset, frozen, blurred and moved within 20 s."""


@pytest.fixture
def baseline(media) -> Baseline:
    """A warmed-up baseline of the good literal kitchen, noise floor 0.8."""
    base = Baseline()
    for _ in range(10):
        base = base.learn(media.measures())
    assert base.ready and base.similarity_ready
    return base


CHECKED = Memory(state=State.OK, since=0.0, held=True, verified=True, last_t=0.0)
"""A camera held by a relay and found good at t=0: where most timelines start."""


def held(baseline: Baseline) -> Memory:
    """A new camera a relay has just taken up at t=0: nothing checked yet."""
    return step(Memory(), LeaseHeld(0.0), baseline, CONFIG).memory


def run(
    timeline: Iterable[Evidence],
    baseline: Baseline,
    memory: Memory | None = None,
    config: Config = CONFIG,
) -> tuple[list[Transition], Memory]:
    """Fold a timeline through ``step``; a camera held and found good at t=0 unless given."""
    if memory is None:
        memory = CHECKED
    transitions: list[Transition] = []
    for evidence in timeline:
        result = step(memory, evidence, baseline, config)
        memory = result.memory
        transitions.extend(result.transitions)
    return transitions, memory


def samples(
    start: float, stop: float, dt: float, measures: Callable[[float], FrameMeasures]
) -> list[Evidence]:
    """Frame samples every ``dt`` seconds in [start, stop), each compared with the one before."""
    out: list[Evidence] = []
    t = start
    while t < stop:
        out.append(FrameSample(t, measures(t), t - dt if t - dt >= 0 else None))
        t = round(t + dt, 6)
    return out


def states(transitions: list[Transition]) -> list[tuple[float, State]]:
    return [(tr.t, tr.to_state) for tr in transitions]


# --- literal timelines -------------------------------------------------------------------


def test_a_camera_is_unmonitored_until_a_relay_holds_it(baseline):
    result = step(Memory(), Tick(0.0), baseline, CONFIG)
    assert result.memory.state == State.UNMONITORED
    assert not result.transitions


NEW_CAMERA_TIMELINES = {
    "nothing yet": ([(float(t), "tick") for t in range(1, 30)], []),
    "packets, no picture": ([(float(t), "media") for t in range(1, 30)], []),
    "a good picture": (
        [(1.0, "media"), (2.0, "good")],
        [(2.0, State.UNMONITORED, State.OK, "checked")],
    ),
    "covered from the start": (
        [(float(t), "covered") for t in range(2, 14, 2)]
        + [(float(t), "good") for t in range(14, 24, 2)],
        [
            (6.0, State.UNMONITORED, State.COVERED, "covered"),
            (20.0, State.COVERED, State.OK, "cleared"),
        ],
    ),
    "unreachable from the start": (
        [(t, "refused") for t in (1.0, 4.0, 7.0)] + [(float(t), "tick") for t in range(8, 12)],
        [(7.0, State.UNMONITORED, State.OFFLINE, "offline")],
    ),
}
"""A camera a relay has just taken up: what comes (time, kind), and the transitions expected."""


@pytest.mark.parametrize("name", NEW_CAMERA_TIMELINES)
def test_a_new_camera_is_ok_only_after_a_good_picture(
    name: str, media: Any, baseline: Baseline
) -> None:
    """A relay taking up a camera proves nothing about it: it stays ``unmonitored`` (awaiting
    evidence, nobody blamed) until a picture is checked good, or a fault is raised."""
    timeline, expected = NEW_CAMERA_TIMELINES[name]
    pictures = {"good": media.measures(), "covered": _bad(Condition.COVERED, media)}
    start = step(Memory(), LeaseHeld(0.0), baseline, CONFIG)
    assert start.memory.state == State.UNMONITORED and start.memory.held
    assert not start.transitions  # unmonitored before, unmonitored now
    evidence: list[Evidence] = []
    for t, kind in timeline:
        if kind == "tick":
            evidence.append(Tick(t))
        elif kind == "media":
            evidence.append(MediaFlowing(t))
        elif kind == "refused":
            evidence.append(ConnectionProblem(t, Problem.CANNOT_CONNECT, "connection refused"))
        else:
            evidence.append(FrameSample(t, pictures[kind], t - 2.0 if t > 2.0 else None))
    transitions, memory = run(evidence, baseline, start.memory)
    assert [(tr.t, tr.from_state, tr.to_state, tr.cause) for tr in transitions] == expected
    assert memory.verified == any(to == State.OK for _, _, to, _ in expected)


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (2.0, []),  # a hand-over: the verdict carries over, nothing flaps
        (CONFIG.resume_gap_s, []),
        (
            20.0,
            [
                (State.OK, State.UNMONITORED, "awaiting_evidence"),
                (State.UNMONITORED, State.OK, "checked"),
            ],
        ),
    ],
)
def test_a_relay_taking_over_keeps_ok_only_across_a_short_gap(
    gap: float, expected: list[tuple[State, State, str]], media: Any, baseline: Baseline
) -> None:
    """The next relay loads the memory the last one saved (still ``held``): recent good
    evidence carries over; after a longer gap (a dead relay) the camera is checked afresh,
    and shown ``unmonitored`` (our gap, not the restaurant's) until it is."""
    _, previous = run(samples(2.0, 30.0, 2.0, lambda t: media.measures()), baseline)
    assert previous.state == State.OK and previous.last_t == 28.0
    resumed = 28.0 + gap
    later: list[Evidence] = [LeaseHeld(resumed), FrameSample(resumed + 1.0, media.measures())]
    transitions, memory = run(later, baseline, previous)
    assert [(tr.from_state, tr.to_state, tr.cause) for tr in transitions] == expected
    assert memory.state == State.OK and memory.held


def test_a_relay_taking_over_keeps_raised_flags_and_stops_pending_clocks(
    media: Any, baseline: Baseline
) -> None:
    covered, dark = _bad(Condition.COVERED, media), _bad(Condition.DARK, media)
    timeline = samples(2.0, 12.0, 2.0, lambda t: covered)  # raised at 6
    timeline += [FrameSample(12.0, dark, 10.0), FrameSample(14.0, dark, 12.0)]  # pending
    _, previous = run(timeline, baseline)
    assert previous.state == State.COVERED and previous.pending()
    result = step(previous, LeaseHeld(15.0), baseline, CONFIG)
    assert not result.transitions
    tracks = result.memory.tracks
    assert tracks[Condition.COVERED].active and tracks[Condition.DARK].bad_since is None


def test_offline_within_10_s_of_the_last_packet(baseline):
    """Packets stop at t=30.0; the supervisor's 5 s read timeout reports the stall at 35."""
    timeline: list[Evidence] = [MediaFlowing(float(t)) for t in range(1, 31)]
    timeline.append(ConnectionProblem(35.0, Problem.STALLED, "no packet for 5 s", since=30.0))
    timeline += [Tick(35.0 + i) for i in range(1, 10)]
    transitions, _ = run(timeline, baseline)
    ((t, to),) = states(transitions)
    assert to == State.OFFLINE
    assert t - 30.0 <= TARGET_S[Condition.OFFLINE]
    assert t - 30.0 >= CONFIG.offline_raise_s
    assert transitions[0].cause == "offline"
    assert "stalled: no packet for 5 s" in transitions[0].detail
    assert transitions[0].measures["offline.since"] == 30.0


def test_cannot_connect_from_the_start_is_offline(baseline):
    timeline = [
        ConnectionProblem(float(t), Problem.CANNOT_CONNECT, "connection refused")
        for t in range(0, 20, 3)
    ]
    timeline += [Tick(float(t)) for t in range(20, 25)]
    transitions, _ = run(sorted(timeline, key=lambda e: e.t), baseline)
    assert states(transitions) == [(6.0, State.OFFLINE)]
    # Raised on the third report: counted from the first, as the event says.
    assert transitions[0].measures["offline.since"] == 0.0


def test_a_short_hiccup_raises_nothing_and_offline_clears_on_media(media, baseline):
    hiccup: list[Evidence] = [
        MediaFlowing(1.0),
        ConnectionProblem(4.0, Problem.STALLED, since=1.0),
        Tick(5.0),
        MediaFlowing(5.5),
        Tick(8.0),
        Tick(12.0),
    ]
    transitions, memory = run(hiccup, baseline)
    assert transitions == []
    outage: list[Evidence] = [
        ConnectionProblem(20.0, Problem.NO_MEDIA, "connected, no packets", since=14.0),
        Tick(21.0),
        MediaFlowing(30.0),
        MediaFlowing(31.0),
        Tick(33.0),  # ticks do not clear: only media does
        MediaFlowing(34.0),
    ]
    transitions, memory = run(outage, baseline, memory)
    # Media is back, but only a checked picture makes the camera ok again.
    assert states(transitions) == [(20.0, State.OFFLINE), (34.0, State.UNMONITORED)]
    assert transitions[1].cause == "awaiting_evidence"
    assert transitions[1].detail == "offline cleared; no good picture checked yet"
    transitions, _ = run([FrameSample(35.0, media.measures())], baseline, memory)
    assert [(tr.to_state, tr.cause) for tr in transitions] == [(State.OK, "checked")]


def test_offline_clears_straight_to_ok_when_pictures_come_back(
    media: Any, baseline: Baseline
) -> None:
    outage: list[Evidence] = [
        ConnectionProblem(20.0, Problem.NO_MEDIA, "connected, no packets", since=14.0),
        *samples(30.0, 36.0, 2.0, lambda t: media.measures()),
    ]
    transitions, _ = run(outage, baseline)
    assert [(t, to) for t, to in states(transitions)] == [(20.0, State.OFFLINE), (34.0, State.OK)]
    assert transitions[1].cause == "cleared"


def _bad(condition: Condition, media) -> FrameMeasures:
    return {
        Condition.DARK: media.measures(luminance__p98=22.0, luminance__mean=19.0),
        Condition.COVERED: media.measures(texture__detail=0.006, texture__edge_density=0.0),
        Condition.BLURRED: media.measures(sharpness__ratio=0.3),
        Condition.FROZEN: media.measures(change__bulk=0.0, change__quiet=0.0),
        Condition.MOVED: media.measures(similarity__score=0.1),
    }[condition]


@pytest.mark.parametrize("dt", [1.0, 2.0, 4.0])
@pytest.mark.parametrize(
    "condition",
    [Condition.DARK, Condition.COVERED, Condition.BLURRED, Condition.FROZEN, Condition.MOVED],
)
def test_each_condition_is_raised_within_its_target(condition, dt, media, baseline):
    """The fault starts just after a sample (the worst case) and stays."""
    onset = 40.0 + 0.01
    good, bad = media.measures(), _bad(condition, media)

    def measures(t: float) -> FrameMeasures:
        if condition == Condition.FROZEN:
            # The first sample after the freeze still differs from the live one before it.
            return bad if t - dt >= onset else good
        return bad if t >= onset else good

    transitions, _ = run(samples(dt, 100.0, dt, measures), baseline)
    ((t, to),) = states(transitions)
    assert to == State(condition.value)
    assert t - onset <= TARGET_S[condition]
    assert t - onset >= CONFIG.raise_after(condition) - dt  # not before its time
    assert transitions[0].cause == condition.value


@pytest.mark.parametrize(
    "condition",
    [Condition.DARK, Condition.COVERED, Condition.BLURRED, Condition.FROZEN, Condition.MOVED],
)
def test_each_condition_clears_after_good_evidence_holds(condition, media, baseline):
    good, bad = media.measures(), _bad(condition, media)
    timeline = samples(2.0, 60.0, 2.0, lambda t: bad if 20 <= t < 40 else good)
    transitions, _ = run(timeline, baseline)
    (_, raised), (cleared_t, cleared) = states(transitions)
    assert raised == State(condition.value) and cleared == State.OK
    # the first good sample is at 40 (frozen: good as soon as the picture changes again)
    assert cleared_t - 40.0 >= CONFIG.clear_after(condition)
    assert cleared_t - 40.0 <= CONFIG.clear_after(condition) + 2.0


def test_a_person_passing_the_lens_for_2_s_raises_nothing(media, baseline):
    """Dense sampling: every half second, the picture is dark, featureless, unlike the
    reference and blurred for 2 s."""
    close = media.measures(
        luminance__p98=35.0,
        texture__detail=0.004,
        texture__edge_density=0.0,
        sharpness__ratio=0.26,
        similarity__score=0.05,
    )
    timeline = samples(0.5, 60.0, 0.5, lambda t: close if 30.0 <= t <= 32.0 else media.measures())
    transitions, memory = run(timeline, baseline)
    assert transitions == []
    assert not memory.pending()


def test_flapping_and_grey_evidence_raise_nothing(media, baseline):
    bad = _bad(Condition.COVERED, media)
    grey = media.measures(texture__detail=0.045, texture__edge_density=0.05)
    assert grade(grey, baseline, CONFIG).grades[Condition.COVERED] == Grade.GREY
    flapping = samples(2.0, 120.0, 2.0, lambda t: bad if int(t) % 6 else media.measures())
    assert run(flapping, baseline)[0] == []
    greyish = samples(2.0, 120.0, 2.0, lambda t: bad if int(t) % 6 else grey)
    assert run(greyish, baseline)[0] == []


def test_dark_hides_the_conditions_it_implies(media, baseline):
    """A dark picture is also featureless, blurred, frozen and unlike the reference: only
    ``dark`` is raised, and when the light comes back the state goes straight to ``ok``."""
    everything = media.measures(
        luminance__p98=20.0,
        texture__detail=0.002,
        texture__edge_density=0.0,
        sharpness__ratio=0.25,
        change__bulk=0.0,
        similarity__score=0.0,
    )
    timeline = samples(2.0, 120.0, 2.0, lambda t: everything if 20 <= t < 80 else media.measures())
    transitions, _ = run(timeline, baseline)
    assert [to for _, to in states(transitions)] == [State.DARK, State.OK]


def test_priority_when_several_conditions_hold(media, baseline):
    blurred_frozen = media.measures(sharpness__ratio=0.3, change__bulk=0.0)
    frozen = media.measures(change__bulk=0.0)

    def measures(t: float) -> FrameMeasures:
        if t < 20:
            return media.measures()
        if t < 30:
            return frozen
        if t < 60:
            return blurred_frozen
        if t < 90:
            return frozen
        return media.measures()

    transitions, _ = run(samples(2.0, 120.0, 2.0, measures), baseline)
    assert [to for _, to in states(transitions)] == [
        State.FROZEN,  # frozen first (at 28: onset 18, the previous sample)
        State.BLURRED,  # blurred outranks frozen once raised
        State.FROZEN,  # blurred cleared, frozen still holds
        State.OK,
    ]
    assert transitions[2].cause == "frozen"
    assert "blurred cleared; frozen still raised" in transitions[2].detail


def test_offline_outranks_and_a_raised_flag_survives_it(media, baseline):
    covered = _bad(Condition.COVERED, media)
    timeline: list[Evidence] = list(samples(2.0, 30.0, 2.0, lambda t: covered))
    timeline.append(ConnectionProblem(35.0, Problem.STALLED, since=28.0))
    timeline += [Tick(float(t)) for t in range(36, 40)]
    timeline += samples(40.0, 50.0, 2.0, lambda t: covered)
    timeline += samples(50.0, 70.0, 2.0, lambda t: media.measures())
    transitions, _ = run(timeline, baseline)
    assert [to for _, to in states(transitions)] == [
        State.COVERED,
        State.OFFLINE,
        State.COVERED,  # media back, still covered: covered again, not ok
        State.OK,
    ]


def test_lost_lease_is_unmonitored_never_offline(media, baseline):
    covered = _bad(Condition.COVERED, media)
    timeline: list[Evidence] = list(samples(2.0, 20.0, 2.0, lambda t: covered))
    timeline.append(LeaseLost(21.0, "relay r1 stopped renewing"))
    # A fenced-out relay's late evidence and the camera's own failures change nothing now.
    timeline.append(ConnectionProblem(22.0, Problem.CANNOT_CONNECT, "refused"))
    timeline += [Tick(float(t)) for t in range(23, 60)]
    timeline += samples(60.0, 64.0, 2.0, lambda t: media.measures())
    transitions, memory = run(timeline, baseline)
    assert [to for _, to in states(transitions)] == [State.COVERED, State.UNMONITORED]
    assert transitions[1].cause == "lease_lost"
    assert memory.state == State.UNMONITORED
    # Another relay takes over: the raised flag stands until good evidence clears it.
    later: list[Evidence] = [LeaseHeld(70.0)]
    later += samples(72.0, 90.0, 2.0, lambda t: media.measures())
    transitions, _ = run(later, baseline, memory)
    assert states(transitions) == [(70.0, State.COVERED), (78.0, State.OK)]


def test_disabled_overrides_everything_and_enabling_starts_afresh(media, baseline):
    covered = _bad(Condition.COVERED, media)
    timeline: list[Evidence] = list(samples(2.0, 20.0, 2.0, lambda t: covered))
    timeline.append(Disabled(21.0, by="restaurant 17"))
    timeline += samples(22.0, 40.0, 2.0, lambda t: covered)
    timeline.append(ConnectionProblem(41.0, Problem.CANNOT_CONNECT))
    timeline.append(Enabled(50.0, by="regulator ana"))
    timeline.append(FrameSample(52.0, media.measures()))
    transitions, memory = run(timeline, baseline)
    assert [(tr.to_state, tr.cause) for tr in transitions] == [
        (State.COVERED, "covered"),
        (State.DISABLED, "disabled"),
        (State.UNMONITORED, "enabled"),  # switched on: checked afresh
        (State.OK, "checked"),
    ]
    assert "restaurant 17" in transitions[1].detail
    assert not memory.pending()
    unheld = step(Memory(), Disabled(1.0), baseline, CONFIG).memory
    assert step(unheld, Enabled(2.0), baseline, CONFIG).memory.state == State.UNMONITORED


def test_transitions_carry_the_measured_values(media, baseline):
    covered = _bad(Condition.COVERED, media)
    transitions, _ = run(samples(2.0, 20.0, 2.0, lambda t: covered), baseline)
    (transition,) = transitions
    assert transition.t == 6.0  # bad since 2.0, for covered_raise_s
    assert transition.from_state == State.OK
    assert transition.measures["texture.detail"] == pytest.approx(0.006)
    assert transition.measures["covered.detail_ratio"] == pytest.approx(0.006 / 0.11, abs=1e-3)
    assert transition.detail == "covered for 4 s"
    json.dumps(transition.measures)


def test_memory_survives_a_restart_mid_run(media, baseline):
    """The checker stores the memory as JSON; a restart between samples changes nothing."""
    blurred = _bad(Condition.BLURRED, media)
    timeline = samples(2.0, 60.0, 2.0, lambda t: blurred if t >= 20 else media.measures())
    straight, _ = run(timeline, baseline)
    first, memory = run(timeline[:12], baseline)
    restored = Memory.from_dict(json.loads(json.dumps(memory.to_dict())))
    assert restored == memory
    second, _ = run(timeline[12:], baseline, restored)
    assert first + second == straight
    assert len(straight) == 1


def test_a_malformed_memory_is_an_error():
    data = Memory().to_dict()
    data["state"] = "sleeping"
    with pytest.raises(ValueError, match="malformed state memory"):
        Memory.from_dict(data)


def test_stale_evidence_is_ignored(media, baseline):
    _, memory = run([MediaFlowing(10.0)], baseline)
    result = step(memory, ConnectionProblem(5.0, Problem.STALLED), baseline, CONFIG)
    assert result.memory == memory
    assert not result.transitions


def test_a_gap_in_the_samples_breaks_a_run(media, baseline):
    covered = _bad(Condition.COVERED, media)
    timeline = [
        FrameSample(2.0, covered, 0.0),
        FrameSample(4.0, covered, 2.0),
        FrameSample(30.0, covered, None),  # 26 s without a sample
        FrameSample(32.0, covered, 30.0),
        FrameSample(34.0, covered, 32.0),
    ]
    transitions, _ = run(timeline, baseline)
    assert states(transitions) == [(34.0, State.COVERED)]


def test_config_names_its_durations():
    assert CONFIG.raise_after(Condition.COVERED) == CONFIG.covered_raise_s
    assert CONFIG.clear_after(Condition.MOVED) == CONFIG.moved_clear_s
    with pytest.raises(ValueError, match="dark_raise_s"):
        Config(dark_raise_s=-1.0)


# --- grading -----------------------------------------------------------------------------


def test_before_warm_up_only_absolute_rules_apply(media):
    fresh = Baseline()
    featureless = media.measures(texture__detail=0.002, texture__edge_density=0.0)
    grades = grade(featureless, fresh, CONFIG).grades
    assert grades[Condition.COVERED] == Grade.BAD
    assert grades[Condition.BLURRED] == Grade.UNKNOWN
    low_detail = media.measures(texture__detail=0.02, texture__edge_density=0.001)
    assert grade(low_detail, fresh, CONFIG).grades[Condition.COVERED] == Grade.GOOD
    # Moved uses its absolute thresholds until the typical similarity is known.
    assert (
        grade(media.measures(similarity__score=0.2), fresh, CONFIG).grades[Condition.MOVED]
        == Grade.BAD
    )


def test_a_featureless_scene_cannot_be_judged_covered(media):
    wall = Baseline()
    for _ in range(10):
        wall = wall.learn(media.measures(texture__detail=0.006, texture__edge_density=0.0))
    cloth = media.measures(texture__detail=0.004, texture__edge_density=0.0)
    assert grade(cloth, wall, CONFIG).grades[Condition.COVERED] == Grade.UNKNOWN


def test_unknown_when_there_is_nothing_to_compare(media, baseline):
    m = media.measures(change=None, similarity=None)
    grades = grade(m, baseline, CONFIG).grades
    assert grades[Condition.FROZEN] == Grade.UNKNOWN
    assert grades[Condition.MOVED] == Grade.UNKNOWN
    clipped = media.measures(change__bulk=0.0, change__informative_fraction=0.1)
    assert grade(clipped, baseline, CONFIG).grades[Condition.FROZEN] == Grade.UNKNOWN
    plain_reference = media.measures(similarity__reference_structure=0.001)
    assert grade(plain_reference, baseline, CONFIG).grades[Condition.MOVED] == Grade.UNKNOWN


def test_frozen_threshold_follows_the_noise_floor_but_is_capped(media, baseline):
    quiet_day = media.measures(change__bulk=0.3, change__quiet=0.25)
    day_floor = replace(baseline, noise_floor=0.3)
    assert grade(quiet_day, day_floor, CONFIG).grades[Condition.FROZEN] == Grade.GOOD
    assert (
        grade(media.measures(change__bulk=0.1), day_floor, CONFIG).grades[Condition.FROZEN]
        == Grade.BAD
    )
    night_floor = replace(baseline, noise_floor=3.0)  # learned at night, now a quiet morning
    verdict = grade(quiet_day, night_floor, CONFIG)
    assert verdict.grades[Condition.FROZEN] == Grade.GREY  # not bad: the cap holds
    assert verdict.values["frozen.threshold"] == CONFIG.frozen_max_change
    repeated = media.measures(repeated=True)
    assert grade(repeated, baseline, CONFIG).grades[Condition.FROZEN] == Grade.BAD


def test_learning_only_from_good_samples_of_an_ok_camera(media, baseline):
    _, memory = run([], baseline)
    good = step(memory, FrameSample(2.0, media.measures(), 0.0), baseline, CONFIG)
    assert good.learning.scene and good.learning.similarity and good.learning.noise
    grey_frozen = media.measures(change__bulk=0.35, change__moving_fraction=0.0)
    assert grade(grey_frozen, baseline, CONFIG).grades[Condition.FROZEN] == Grade.GREY
    result = step(memory, FrameSample(2.0, grey_frozen, 0.0), baseline, CONFIG)
    assert result.learning.scene and result.learning.noise
    grey_moved = media.measures(similarity__score=0.45)
    result = step(memory, FrameSample(2.0, grey_moved, 0.0), baseline, CONFIG)
    assert result.learning.scene and not result.learning.similarity
    _, raised = run(samples(2.0, 20.0, 2.0, lambda t: _bad(Condition.MOVED, media)), baseline)
    result = step(raised, FrameSample(22.0, media.measures(), 20.0), baseline, CONFIG)
    assert not result.learning


# --- end to end through the analysers, with synthetic camera frames ----------------------


@pytest.fixture(scope="module")
def scenes(media) -> SimpleNamespace:
    """Scenes shared by the end-to-end runs (drawing them is the slow part)."""
    kitchen = media.Kitchen(seed=1)
    day = kitchen.view(0)
    return SimpleNamespace(
        day=day,
        walkers=[media.person(day, x, 220, 45, 130) for x in np.linspace(100, 540, 6)],
        panned=kitchen.view(500),
        cloth=media.cloth(),
        close=media.hand(day, level=60),
        infrared=media.Kitchen(seed=1, palette=1).view(0),
        plain=media.Kitchen(seed=1, low_texture=True).view(0),
    )


FrameAt = Callable[[float, object], np.ndarray]


def monitor_run(
    media, frame_at: FrameAt, *, reference, until: float, dt: float = 2.0, noise: float = 1.5
) -> tuple[list[Transition], CameraMonitor]:
    """Sample a synthetic camera every ``dt`` seconds through a fresh monitor. Every frame
    gets a burnt-in clock, as real cameras' on-screen display does."""
    camera = media.Camera(seed=5, noise=noise)
    monitor = CameraMonitor()
    assert not monitor.observe(LeaseHeld(0.0)).transitions
    approved = camera.shoot(reference).astype(np.float64)  # taken from the stream: clock too
    monitor.approve_reference(
        np.clip(media.draw_clock(approved, 8 * 3600), 0, 255).astype(np.uint8)
    )
    transitions: list[Transition] = []
    t = dt
    while t <= until:
        frame = frame_at(t, camera).astype(np.float64)
        clocked = np.clip(media.draw_clock(frame, 8 * 3600 + t), 0, 255).astype(np.uint8)
        transitions += monitor.sample(t, clocked).transitions
        t = round(t + dt, 6)
    # The first picture of the kitchen is checked good: ok from then on, not before.
    checked, *rest = transitions
    assert (checked.t, checked.from_state, checked.to_state) == (dt, State.UNMONITORED, State.OK)
    return rest, monitor


ONSET = 60.01
"""Faults start here, just after a sample, once the baseline has warmed up."""


@pytest.mark.parametrize("dt", [2.0, 4.0])
@pytest.mark.parametrize("fault", ["covered", "hand", "dark", "blurred", "frozen", "loop", "moved"])
def test_synthetic_faults_are_raised_within_target(fault, dt, media, scenes):
    recorded: list[np.ndarray] = []  # the last frames before the onset, for the replay
    after: list[np.ndarray] = []  # frames sent since the onset

    def frame_at(t: float, camera) -> np.ndarray:
        walker = scenes.walkers[int(t / dt) % len(scenes.walkers)]
        if t < ONSET:
            frame = camera.shoot(walker)
            recorded[:] = [*recorded, frame][-3:]
            return frame
        if fault == "covered":
            frame = camera.shoot(scenes.cloth)
        elif fault == "hand":
            frame = camera.shoot(scenes.close)
        elif fault == "dark":
            frame = camera.shoot(walker, gain=0.03)
        elif fault == "blurred":
            frame = camera.shoot(walker, blur=3.0)
        elif fault == "moved":
            frame = camera.shoot(scenes.panned)
        elif fault == "frozen":  # the picture stops at the first frame after the onset
            frame = after[0] if after else camera.shoot(walker)
        else:  # "loop": a recording of the last three samples replayed over and over
            frame = recorded[len(after) % 3]
        after.append(frame)
        return frame

    transitions, _ = monitor_run(media, frame_at, reference=scenes.day, until=ONSET + 30, dt=dt)
    expected = (
        State.FROZEN
        if fault in ("frozen", "loop")
        else State({"hand": "covered"}.get(fault, fault))
    )
    ((t, to),) = states(transitions)
    assert to == expected
    assert t - ONSET <= TARGET_S[Condition(expected.value)]


@pytest.mark.parametrize(
    "negative",
    [
        "person close for 2 s",
        "lights dimmed 40 %",
        "auto-exposure flicker",
        "still kitchen at night",
        "still kitchen in the morning",
        "low-texture scene",
        "day/night infrared switch",
    ],
)
def test_synthetic_hard_negatives_raise_nothing(negative, media, scenes):
    dt, until, reference, noise = 2.0, 240.0, scenes.day, 1.5

    def busy(t: float, camera, **kwargs) -> np.ndarray:
        return camera.shoot(scenes.walkers[int(t / 2) % len(scenes.walkers)], **kwargs)

    if negative == "person close for 2 s":
        dt, until = 0.5, 100.0

        def frame_at(t: float, camera) -> np.ndarray:
            return camera.shoot(scenes.close) if ONSET <= t <= ONSET + 2 else busy(t, camera)
    elif negative == "lights dimmed 40 %":

        def frame_at(t: float, camera) -> np.ndarray:
            return busy(t, camera, gain=0.6, noise=2.0) if t >= ONSET else busy(t, camera)
    elif negative == "auto-exposure flicker":

        def frame_at(t: float, camera) -> np.ndarray:
            return busy(t, camera, gain=1.0 + 0.3 * np.sin(1.3 * t))
    elif negative == "still kitchen at night":
        until = 360.0

        def frame_at(t: float, camera) -> np.ndarray:
            return camera.shoot(scenes.day, gain=0.35, noise=4.0) if t >= ONSET else busy(t, camera)
    elif negative == "still kitchen in the morning":
        until = 360.0  # the noise floor was learned on a noisy night; the day sensor is quiet

        def frame_at(t: float, camera) -> np.ndarray:
            if t < ONSET:
                return camera.shoot(scenes.day, gain=0.35, noise=5.0)
            return camera.shoot(scenes.day, noise=0.6)
    elif negative == "low-texture scene":
        reference = scenes.plain

        def frame_at(t: float, camera) -> np.ndarray:
            return camera.shoot(scenes.plain)
    else:

        def frame_at(t: float, camera) -> np.ndarray:
            if ONSET <= t < 180:
                return camera.shoot(scenes.infrared, gain=1.2, noise=3.0, blur=0.8)
            return busy(t, camera)

    transitions, monitor = monitor_run(
        media, frame_at, reference=reference, until=until, dt=dt, noise=noise
    )
    assert transitions == []
    assert monitor.state == State.OK
