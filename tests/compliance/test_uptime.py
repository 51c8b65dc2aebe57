"""Uptime from literal event timelines: ok over accountable time; unmonitored and disabled
count neither way; time before registration is not counted."""

from __future__ import annotations

import pytest

from kitchencam.compliance.states import State
from kitchencam.compliance.uptime import Change, uptime

OK, COVERED, UNMON, OFF = State.OK, State.COVERED, State.UNMONITORED, State.DISABLED


def test_fraction_of_ok_over_accountable_time() -> None:
    changes = [Change(100.0, UNMON, OK), Change(400.0, OK, COVERED), Change(500.0, COVERED, OK)]
    up = uptime(changes, start=0.0, end=1000.0, current=OK, known_since=0.0)
    assert up.ok_s == 800.0 and up.faulty_s == 100.0 and up.excluded_s == 100.0
    assert up.ratio == pytest.approx(800 / 900)


def test_unmonitored_and_disabled_do_not_count_against_the_restaurant() -> None:
    changes = [
        Change(0.0, UNMON, OK),
        Change(100.0, OK, UNMON),  # our relay died for 5 minutes
        Change(400.0, UNMON, OK),
        Change(500.0, OK, OFF),  # switched off
    ]
    up = uptime(changes, start=0.0, end=1000.0, current=OFF, known_since=0.0)
    assert up.ratio == 1.0 and up.excluded_s == 800.0


def test_window_without_changes_takes_the_current_state() -> None:
    assert uptime([], start=0.0, end=10.0, current=COVERED, known_since=0.0).ratio == 0.0
    assert uptime([], start=0.0, end=10.0, current=UNMON, known_since=0.0).ratio is None


def test_time_before_registration_and_outside_the_window_is_left_out() -> None:
    changes = [Change(50.0, OK, COVERED), Change(150.0, COVERED, OK)]
    up = uptime(changes, start=100.0, end=200.0, current=OK, known_since=120.0)
    # Only 120..200 counts: covered until 150, ok after.
    assert up.faulty_s == 30.0 and up.ok_s == 50.0
