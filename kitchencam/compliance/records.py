"""What the compliance checker stores and shows: news entries, events, published states.

Plain models with JSON round-trips and no I/O. The key names are in ``kitchencam.keys``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from kitchencam.compliance.states import State
from kitchencam.models import Camera


class Kind(enum.StrEnum):
    """What a ``kc:transitions`` entry reports."""

    MONITOR = "monitor"
    """The relay's monitor changed state (with measures and snapshots)."""
    HELD = "held"
    """A relay started analysing the camera (``to``: its monitor's state)."""
    LOST = "lost"
    """No relay refreshes the camera's hold any more (written by a checker)."""
    SWITCH = "switch"
    """The camera was enabled or disabled in the registry (written by a checker)."""
    REGISTERED = "registered"
    """A camera the checker had no state for (written by a checker)."""
    DELETED = "deleted"
    """The camera was deleted (written by a checker)."""


class News(BaseModel):
    """One ``kc:transitions`` entry: flat string fields in Redis."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Kind
    camera: str
    t: float
    from_state: str = ""
    to_state: str = ""
    cause: str = ""
    detail: str = ""
    measures: dict[str, float] = {}
    snapshot: str = ""
    last_good: str = ""
    relay: str = ""
    enabled: bool = True

    def fields(self) -> dict[str, str]:
        """The entry's fields for XADD."""
        return {
            "kind": self.kind.value,
            "camera": self.camera,
            "t": repr(self.t),
            "from": self.from_state,
            "to": self.to_state,
            "cause": self.cause,
            "detail": self.detail,
            "measures": json.dumps(self.measures, separators=(",", ":")),
            "snapshot": self.snapshot,
            "last_good": self.last_good,
            "relay": self.relay,
            "enabled": "1" if self.enabled else "0",
        }

    @classmethod
    def parse(cls, data: Mapping[str, str]) -> News:
        """Rebuild from XREADGROUP fields; ``ValueError`` if malformed."""
        try:
            return cls(
                kind=Kind(data["kind"]),
                camera=data["camera"],
                t=float(data["t"]),
                from_state=data.get("from", ""),
                to_state=data.get("to", ""),
                cause=data.get("cause", ""),
                detail=data.get("detail", ""),
                measures=json.loads(data.get("measures") or "{}"),
                snapshot=data.get("snapshot", ""),
                last_good=data.get("last_good", ""),
                relay=data.get("relay", ""),
                enabled=data.get("enabled", "1") == "1",
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"malformed compliance news: {err}") from err


class Event(BaseModel):
    """A durable change of a camera's published state, with its evidence."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    """The ``kc:transitions`` entry id that caused it (unique, time-ordered)."""
    camera_id: str
    restaurant_id: str
    district: str
    t: float
    from_state: State
    to_state: State
    cause: str
    detail: str
    measures: dict[str, float] = {}
    snapshot: str | None = None
    """SHA-256 of the JPEG of the picture that decided it (``/api/v1/snapshots/{sha}``)."""
    last_good: str | None = None
    """SHA-256 of the JPEG of the last picture the camera was fully good in."""
    relay: str | None = None

    def public(self) -> dict[str, Any]:
        """What the API shows."""
        return self.model_dump(mode="json")


class CameraState(BaseModel):
    """A camera's published compliance state: what regulators see, queryable at once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    camera_id: str
    restaurant_id: str
    district: str
    state: State
    since: float
    cause: str = ""
    detail: str = ""
    enabled: bool = True
    held: bool = False
    """A relay analyses the camera (its hold is fresh)."""
    monitor_state: State | None = None
    """The relay-side monitor's own state (what the camera shows while held)."""
    relay: str | None = None
    last_entry: str = "0-0"
    """The newest ``kc:transitions`` entry applied (older or equal ones are not re-applied)."""
    last_event: str | None = None
    updated_at: float = 0.0

    @classmethod
    def initial(cls, camera: Camera, district: str) -> CameraState:
        """The state of a camera no checker has seen yet."""
        return cls(
            camera_id=camera.id,
            restaurant_id=camera.restaurant_id,
            district=district,
            state=State.UNMONITORED if camera.enabled else State.DISABLED,
            since=camera.created_at,
            enabled=camera.enabled,
            cause="registered",
            detail="not analysed yet",
        )

    def public(self) -> dict[str, Any]:
        """What the API shows."""
        return self.model_dump(
            mode="json", exclude={"last_entry", "monitor_state", "held", "updated_at"}
        ) | {"monitored": self.held}


def published_state(enabled: bool, held: bool, monitor: State | None) -> State:
    """The state shown for a camera: switched off, then ours to blame, then what it shows."""
    if not enabled:
        return State.DISABLED
    if not held or monitor is None or monitor in (State.UNMONITORED, State.DISABLED):
        return State.UNMONITORED
    return monitor


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
