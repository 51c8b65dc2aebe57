"""What people read about a camera's state: one place for the words of every page.

Pages never show compliance codes (``covered``, ``lease_held``...) or relay and host names:
the portal, the regulators' board and the public watch page all turn a state into a title
and a sentence, and an event's cause code into a sentence, here. Pure functions over the
codes of :mod:`kitchencam.compliance` (listed in ``docs/compliance.md``); a code without
words falls back to a generic phrase, never to the code itself.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from kitchencam.compliance.states import State

STATE_WORDS: Final = MappingProxyType(
    {
        State.OK: ("Live", ""),
        State.UNMONITORED: ("Live", "Not being checked right now."),
        State.OFFLINE: ("Camera offline", "The camera is not sending video."),
        State.DARK: ("Kitchen dark", "The camera sees no light."),
        State.COVERED: ("Lens covered", "Something is covering the camera."),
        State.BLURRED: ("Picture blurred", "The camera's picture is out of focus or fogged."),
        State.FROZEN: ("Picture frozen", "The camera's picture has stopped changing."),
        State.MOVED: ("Camera turned away", "The camera no longer shows the kitchen."),
        State.DISABLED: ("Switched off", "The restaurant switched this camera off."),
    }
)
"""A state as the public sees it: a title and a sentence (empty when all is well)."""

CHECK_TITLES: Final = MappingProxyType(
    {
        State.OK: "Picture good",
        State.UNMONITORED: "Not being checked",
        State.DISABLED: "Switched off",
    }
)
"""Titles that differ for the people who look after the camera (restaurant, regulator): they
need to know whether it is checked, not only whether it plays."""

CONNECTING_WORDS: Final = ("Connecting to the camera", "The video will start by itself.")
"""What the watch page says while the relay is not receiving the camera's video."""

CAUSE_SENTENCES: Final = MappingProxyType(
    {
        "registered": "Camera added; waiting for its first check.",
        "awaiting_evidence": "Being checked: waiting for the first picture.",
        "enabled": "Switched on.",
        "disabled": "Switched off.",
        "switch": "Switched on or off.",
        "deleted": "Camera deleted.",
        "lease_held": "Checking started: the picture is analysed continuously.",
        "held": "Checking started: the picture is analysed continuously.",
        "lease_lost": "Not being checked: a problem on KitchenCam's side, not the restaurant's.",
        "lost": "Not being checked: a problem on KitchenCam's side, not the restaurant's.",
        "cleared": "The picture is good again.",
        "checked": "Picture checked and found good.",
        "offline": "No picture: the camera stopped sending video.",
        "dark": "The kitchen is dark: the camera sees no light.",
        "covered": "Lens covered: something is blocking the camera.",
        "blurred": "Picture blurred: out of focus or fogged.",
        "frozen": "Picture frozen: it has stopped changing.",
        "moved": "Camera turned away: it no longer shows the approved view.",
        "monitor": "The picture check changed its verdict.",
    }
)
"""Why a camera changed state, by the cause code the checker records."""

UNKNOWN_CAUSE: Final = "The camera's state changed."
FLAG_FREE: Final = frozenset({State.OK, State.UNMONITORED, State.DISABLED})
"""States that raise no flag against the restaurant (nothing to acknowledge)."""


def title(state: State | str) -> str:
    """A state's public title ("Lens covered"); unknown codes read "Unknown"."""
    known = _state(state)
    return STATE_WORDS[known][0] if known is not None else "Unknown"


def note(state: State | str) -> str:
    """A state's public sentence ("Something is covering the camera."), or empty."""
    known = _state(state)
    return STATE_WORDS[known][1] if known is not None else ""


def check_title(state: State | str) -> str:
    """A state's title for the restaurant and regulators ("Not being checked")."""
    known = _state(state)
    if known is None:
        return "Unknown"
    return CHECK_TITLES.get(known) or title(known)


def cause(code: str) -> str:
    """Why a camera changed state, as a sentence; never the raw code."""
    return CAUSE_SENTENCES.get(code.strip().lower(), UNKNOWN_CAUSE)


def change(code: str, to: State | str) -> str:
    """Why a camera went to ``to``: the cause's sentence, else the new state's words
    ("Picture good.") rather than the generic phrase."""
    known = CAUSE_SENTENCES.get(code.strip().lower())
    if known is not None:
        return known
    if _state(to) is None:
        return UNKNOWN_CAUSE
    return f"{check_title(to)}."


def raises_flag(state: State | str) -> bool:
    """Whether moving to ``state`` flags the camera (and so can be acknowledged)."""
    known = _state(state)
    return known is not None and known not in FLAG_FREE


def _state(state: State | str) -> State | None:
    if isinstance(state, State):
        return state
    try:
        return State(state)
    except ValueError:
        return None


def for_scripts() -> dict[str, object]:
    """The words as JSON for page scripts that update states live (``board.js``)."""
    return {
        "states": {s.value: check_title(s) for s in State},
        "causes": dict(CAUSE_SENTENCES),
        "unknown": UNKNOWN_CAUSE,
    }
