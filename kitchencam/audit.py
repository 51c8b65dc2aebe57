"""The regulators' audit log: who acknowledged which event, when, and what they noted.

Append-only: each entry goes to ``kc:audit`` (everything, in order) and to
``kc:camera:{cid}:audit`` (the camera page's view) in one ``MULTI``. Neither stream is trimmed
or given an expiry, and nothing in KitchenCam edits or deletes an entry: events expire after
``KITCHENCAM_EVENT_RETENTION_DAYS``, the record of what regulators did about them does not.
Runs on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from kitchencam import keys
from kitchencam.compliance.records import Event, entry_order

MAX_NOTE_LENGTH: Final = 2000
"""Longest acknowledgement note, characters."""
PAGE: Final = 100
"""Audit entries per page."""


class NoteError(ValueError):
    """An acknowledgement note that cannot be accepted (the message says why)."""


def check_note(note: str) -> str:
    """The note, trimmed, if it is acceptable; ``NoteError`` otherwise."""
    note = note.replace("\r\n", "\n").strip()
    if not note:
        raise NoteError("write a note saying what was done about this event")
    if len(note) > MAX_NOTE_LENGTH:
        raise NoteError(f"notes are limited to {MAX_NOTE_LENGTH} characters")
    if any(ord(c) < 0x20 and c not in "\n\t" for c in note):
        raise NoteError("the note contains control characters")
    return note


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit log entry."""

    id: str
    """The ``kc:audit`` stream id (time-ordered, unique)."""
    action: str
    who: str
    """``regulator:{name}``."""
    t: float
    camera_id: str
    restaurant_id: str
    event_id: str
    note: str

    @classmethod
    def parse(cls, eid: str, data: dict[str, str]) -> Entry:
        """An entry from its stream fields."""
        return cls(
            id=eid,
            action=data.get("action", ""),
            who=data.get("who", ""),
            t=float(data.get("t", "0") or 0),
            camera_id=data.get("camera", ""),
            restaurant_id=data.get("restaurant", ""),
            event_id=data.get("event", ""),
            note=data.get("note", ""),
        )


# Appends one entry to the global log and, under the same id, to the camera's own log, so an
# entry is one id wherever it is read (ids the global log gives always grow, so the camera's
# log accepts them).
_APPEND = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
redis.call('XADD', KEYS[2], id, unpack(ARGV))
return id
"""


class AuditLog:
    """Appends to and reads the audit log."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._append = redis.register_script(_APPEND)

    async def acknowledge(self, event: Event, who: str, note: str) -> Entry:
        """Record that ``who`` acknowledged ``event`` with ``note`` (already checked)."""
        fields = {
            "action": "ack",
            "who": who,
            "t": repr(round(time.time(), 3)),
            "camera": event.camera_id,
            "restaurant": event.restaurant_id,
            "event": event.id,
            "note": note,
        }
        args = [part for pair in fields.items() for part in pair]
        eid = await self._append(keys=[keys.AUDIT, keys.camera_audit(event.camera_id)], args=args)
        return Entry.parse(str(eid), fields)

    async def page(self, before: str | None = None, count: int = PAGE) -> list[Entry]:
        """Up to ``count`` entries, newest first, older than ``before`` (an entry id)."""
        top = "+" if before is None else f"({before}"
        if before is not None:
            entry_order(before)  # ValueError for a malformed cursor
        got: Any = await self.redis.xrevrange(keys.AUDIT, top, "-", count=count)
        return [Entry.parse(str(eid), data) for eid, data in got]

    async def of_camera(self, cid: str, count: int = 500) -> list[Entry]:
        """The camera's newest entries, newest first."""
        got: Any = await self.redis.xrevrange(keys.camera_audit(cid), count=count)
        return [Entry.parse(str(eid), data) for eid, data in got]

    @staticmethod
    def by_event(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
        """Entries grouped by the event they are about, oldest first within each."""
        grouped: dict[str, list[Entry]] = {}
        for entry in sorted(entries, key=lambda e: entry_order(e.id)):
            grouped.setdefault(entry.event_id, []).append(entry)
        return grouped
