"""One camera's analysis on real footage: the reference view approved once the picture is
good, evidence with each transition, and saving only when the monitor's mind changes."""

from __future__ import annotations

from kitchencam.compliance.frames import KeyframeDecoder
from kitchencam.compliance.pipeline import CameraAnalysis, Outcome
from kitchencam.compliance.states import State
from tests.compliance.support import LABELS, access_units


def run(name: str) -> tuple[CameraAnalysis, list[tuple[float, Outcome]]]:
    units, info = access_units(name, keyframes_only=True)
    decoder = KeyframeDecoder(info.codec)
    analysis = CameraAnalysis()
    analysis.resume(0.0)
    return analysis, [(u.t, analysis.sample(u.t, decoder.decode(u.au.data))) for u in units]


def test_reference_approved_automatically_once_the_picture_is_good() -> None:
    analysis, outcomes = run("good")
    approved = [t for t, o in outcomes if o.approved is not None]
    assert len(approved) == 1 and 16.0 <= approved[0] <= 22.0  # after the 10-sample warm-up
    assert analysis.has_reference and analysis.state is State.OK
    changed = [(t, o) for t, o in outcomes if o.step.transitions]
    assert len(changed) == 1  # ok once the first picture is checked, and nothing since
    t, outcome = changed[0]
    (transition,) = outcome.step.transitions
    assert (t, transition.from_state, transition.to_state) == (0.0, State.UNMONITORED, State.OK)
    assert transition.cause == "checked" and outcome.snapshot is not None


def test_ok_is_not_the_starting_state() -> None:
    analysis = CameraAnalysis()
    step = analysis.resume(0.0)
    assert not step.transitions and analysis.state is State.UNMONITORED


def test_transition_carries_the_deciding_and_the_last_good_picture() -> None:
    _, outcomes = run("dark")
    changed = [(t, o) for t, o in outcomes if o.step.transitions]
    assert len(changed) == 2
    assert changed[0][1].step.transitions[0].to_state is State.OK  # the first picture checked
    t, outcome = changed[1]
    assert outcome.step.transitions[0].to_state is State.DARK
    assert LABELS["dark"]["onset_s"] < t <= LABELS["dark"]["onset_s"] + 10.0
    assert outcome.snapshot is not None and outcome.last_good is not None
    assert outcome.snapshot.sha256 != outcome.last_good.sha256
    assert outcome.save and outcome.measures is not None


def test_saves_on_change_not_every_sample() -> None:
    _, outcomes = run("good")
    saves = [t for t, o in outcomes if o.save]
    # The first sample, then the baseline about once a minute: 56 s of an ok camera.
    assert 1 <= len(saves) <= 3 < len(outcomes)
    previews = [t for t, o in outcomes if o.preview is not None]
    assert previews == [0.0]
