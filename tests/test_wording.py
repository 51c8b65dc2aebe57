"""The words pages show for states and causes: every state and every cause the checker
records has words, unknown codes never leak, and flags are told apart from calm states."""

from __future__ import annotations

import pytest

from kitchencam import wording
from kitchencam.compliance.states import Condition, State

CHECKER_CAUSES = (
    # kitchencam.compliance: checker._news, sampler (held), states._finish / _step, api.
    "registered",
    "enabled",
    "disabled",
    "deleted",
    "lease_lost",
    "lease_held",
    "cleared",
    "checked",
    "awaiting_evidence",
    # Kind values, the checker's fallback cause.
    "held",
    "lost",
    "switch",
    "monitor",
    *(c.value for c in Condition),
)


@pytest.mark.parametrize("state", list(State))
def test_every_state_has_a_title_and_check_title(state: State) -> None:
    assert wording.title(state) and wording.title(state) != state.value
    assert wording.check_title(state) and wording.check_title(state) != state.value
    assert wording.title(state.value) == wording.title(state)


@pytest.mark.parametrize("code", CHECKER_CAUSES)
def test_every_cause_the_checker_records_has_a_sentence(code: str) -> None:
    sentence = wording.cause(code)
    assert sentence != wording.UNKNOWN_CAUSE
    assert sentence.rstrip(".").lower() != code
    assert "_" not in sentence and "relay" not in sentence.lower()
    assert sentence[0].isupper() and sentence.endswith(".")


@pytest.mark.parametrize(
    ("code", "sentence"),
    [
        ("covered", "Lens covered: something is blocking the camera."),
        ("awaiting_evidence", "Being checked: waiting for the first picture."),
        (" Lease_Held ", "Checking started: the picture is analysed continuously."),
        ("relay_exploded", wording.UNKNOWN_CAUSE),
        ("", wording.UNKNOWN_CAUSE),
    ],
)
def test_cause_sentences(code: str, sentence: str) -> None:
    assert wording.cause(code) == sentence


@pytest.mark.parametrize(
    ("state", "title", "check"),
    [
        (State.OK, "Live", "Picture good"),
        (State.UNMONITORED, "Live", "Not being checked"),
        (State.COVERED, "Lens covered", "Lens covered"),
        (State.OFFLINE, "Camera offline", "Camera offline"),
        ("no_such_state", "Unknown", "Unknown"),
    ],
)
def test_titles(state: State | str, title: str, check: str) -> None:
    assert wording.title(state) == title and wording.check_title(state) == check


@pytest.mark.parametrize("state", list(State))
def test_only_fault_states_raise_a_flag(state: State) -> None:
    calm = state in (State.OK, State.UNMONITORED, State.DISABLED)
    assert wording.raises_flag(state) is not calm
    assert wording.raises_flag(state.value) is not calm


def test_unknown_states_raise_no_flag_and_have_no_note() -> None:
    assert wording.raises_flag("no_such_state") is False
    assert wording.note("no_such_state") == ""


def test_the_words_for_scripts_cover_every_state() -> None:
    words = wording.for_scripts()
    states = words["states"]
    assert isinstance(states, dict) and set(states) == {s.value for s in State}
    assert words["unknown"] == wording.UNKNOWN_CAUSE


@pytest.mark.parametrize(
    ("code", "to", "sentence"),
    [
        ("covered", State.COVERED, "Lens covered: something is blocking the camera."),
        ("ok", State.OK, "Picture good."),
        ("relay_exploded", "dark", "Kitchen dark."),
        ("relay_exploded", "no_such_state", wording.UNKNOWN_CAUSE),
    ],
)
def test_a_change_without_a_known_cause_says_the_new_state(
    code: str, to: State | str, sentence: str
) -> None:
    assert wording.change(code, to) == sentence
