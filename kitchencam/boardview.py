"""The regulators' board as plain data: rows, filters, sorting, tile counts and CSV (pure).

The board's query string (``district``, ``state``, ``q``, ``sort``, ``dir``, ``page``) is parsed
once into :class:`Filters`; the same filters pick the HTML table, its tiles and the CSV export,
so an export holds exactly the rows the regulator was looking at (every page of them).

Tiles count the cameras that pass the district and text filters, by state, whatever the state
filter: clicking a tile narrows the table to that state while the other tiles keep their
numbers. Nothing here does I/O.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlencode

from kitchencam.compliance.records import Event
from kitchencam.compliance.states import State

PAGE_SIZE: Final = 200
"""Table rows per page (the CSV export has every filtered row)."""
MAX_QUERY_LENGTH: Final = 200
"""Longest free-text filter accepted, characters."""
STATE_ORDER: Final = (
    State.OFFLINE,
    State.COVERED,
    State.DARK,
    State.BLURRED,
    State.FROZEN,
    State.MOVED,
    State.OK,
    State.UNMONITORED,
    State.DISABLED,
)
"""Tiles and the ``state`` sort: the restaurant's faults first, then ok, then ours and off."""
SORT_KEYS: Final = (
    "state",
    "restaurant",
    "district",
    "camera",
    "since",
    "uptime_24h",
    "uptime_7d",
    "last_snapshot",
)
DETAIL_SORTS: Final = frozenset({"uptime_24h", "uptime_7d", "last_snapshot"})
"""Sort keys that need every filtered row's details (uptime, snapshot time), not one page's."""
DANGEROUS_FIRST: Final = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is a formula (or hides one) to spreadsheet programs."""


@dataclass(frozen=True, slots=True)
class Row:
    """One camera on the board."""

    camera_id: str
    camera_name: str
    location: str
    restaurant_id: str
    restaurant_name: str
    district: str
    state: State
    since: float
    cause: str = ""
    detail: str = ""
    uptime_24h: float | None = None
    uptime_7d: float | None = None
    last_snapshot: float | None = None
    """When the camera's latest preview picture was taken (Unix s), if fresh."""
    registered: float = 0.0
    """When the camera was registered (uptime does not count time before it)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What the regulator asked the board for."""

    district: str = ""
    state: State | None = None
    q: str = ""
    sort: str = "state"
    descending: bool = False
    page: int = 1

    def query(self, **changes: object) -> str:
        """The query string of these filters with ``changes`` applied (defaults left out)."""
        f = replace(self, **changes)  # type: ignore[arg-type]
        pairs: list[tuple[str, str]] = []
        if f.district:
            pairs.append(("district", f.district))
        if f.state is not None:
            pairs.append(("state", f.state.value))
        if f.q:
            pairs.append(("q", f.q))
        if f.sort != "state":
            pairs.append(("sort", f.sort))
        if f.descending:
            pairs.append(("dir", "desc"))
        if f.page != 1:
            pairs.append(("page", str(f.page)))
        return urlencode(pairs)

    def sorted_by(self, key: str) -> str:
        """The query string that sorts by ``key`` (the other way when already sorted by it)."""
        descending = not self.descending if self.sort == key else False
        return self.query(sort=key, descending=descending, page=1)


def parse_filters(query: Mapping[str, str]) -> Filters:
    """Filters from a query string; ``ValueError`` naming the bad parameter."""
    state: State | None = None
    raw_state = query.get("state", "")
    if raw_state:
        try:
            state = State(raw_state)
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise ValueError(f"state must be one of {names}") from None
    q = query.get("q", "").strip()
    if len(q) > MAX_QUERY_LENGTH:
        raise ValueError(f"the search text is limited to {MAX_QUERY_LENGTH} characters")
    sort = query.get("sort", "") or "state"
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
    direction = query.get("dir", "") or "asc"
    if direction not in ("asc", "desc"):
        raise ValueError("dir must be asc or desc")
    try:
        page = int(query.get("page", "") or "1")
    except ValueError:
        raise ValueError("page must be a whole number") from None
    if page < 1:
        raise ValueError("page must be 1 or more")
    return Filters(
        district=query.get("district", "").strip(),
        state=state,
        q=q,
        sort=sort,
        descending=direction == "desc",
        page=page,
    )


def in_scope(row: Row, f: Filters) -> bool:
    """Whether the row passes the district and text filters (what the tiles count)."""
    if f.district and row.district != f.district:
        return False
    if f.q:
        needle = f.q.casefold()
        haystack = (
            row.restaurant_name,
            row.camera_name,
            row.location,
            row.district,
            row.camera_id,
            row.restaurant_id,
        )
        if not any(needle in text.casefold() for text in haystack):
            return False
    return True


def select(rows: Iterable[Row], f: Filters) -> list[Row]:
    """The rows passing every filter, sorted as asked (all pages)."""
    picked = [r for r in rows if in_scope(r, f) and (f.state is None or r.state is f.state)]
    return sort_rows(picked, f.sort, f.descending)


def tile_counts(rows: Iterable[Row], f: Filters) -> dict[State, int]:
    """Cameras in scope by state, in ``STATE_ORDER`` (zeros included)."""
    counts = dict.fromkeys(STATE_ORDER, 0)
    for row in rows:
        if in_scope(row, f):
            counts[row.state] += 1
    return counts


def sort_rows(rows: Sequence[Row], key: str, descending: bool = False) -> list[Row]:
    """Rows sorted by ``key`` then restaurant and camera; unknown values (no uptime, no
    snapshot) last in either direction."""
    rank = {state: i for i, state in enumerate(STATE_ORDER)}
    tie = sorted(rows, key=lambda r: (r.restaurant_name.casefold(), r.camera_name.casefold()))

    def value(row: Row) -> tuple[bool, float | str]:
        if key == "state":
            return False, rank[row.state]
        if key in ("restaurant", "district", "camera"):
            text = {"restaurant": row.restaurant_name, "district": row.district}.get(
                key, row.camera_name
            )
            return False, text.casefold()
        number = {
            "since": row.since,
            "uptime_24h": row.uptime_24h,
            "uptime_7d": row.uptime_7d,
            "last_snapshot": row.last_snapshot,
        }[key]
        return (number is None), (0.0 if number is None else number)

    known = [r for r in tie if not value(r)[0]]
    unknown = [r for r in tie if value(r)[0]]
    known.sort(key=lambda r: value(r)[1], reverse=descending)
    return known + unknown


def page_of(rows: Sequence[Row], page: int, size: int = PAGE_SIZE) -> tuple[list[Row], int]:
    """The rows of one page and the number of pages (at least 1)."""
    pages = max(1, math.ceil(len(rows) / size))
    start = (min(page, pages) - 1) * size
    return list(rows[start : start + size]), pages


# -- times ------------------------------------------------------------------------------------


def iso(t: float | None) -> str:
    """A Unix time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or empty."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw: str) -> float | None:
    """A time filter: Unix seconds, or an ISO 8601 date or date-time (UTC unless it says
    otherwise); empty gives ``None``; ``ValueError`` otherwise."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError("a time must be a finite number")
        return value
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            "a time is seconds since 1970 or a date like 2026-11-29 or 2026-11-29T08:30"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def percent(ratio: float | None) -> str:
    """An uptime ratio as a percentage with one decimal, or an em dash when unknown."""
    return "—" if ratio is None else f"{ratio * 100:.1f} %"


# -- CSV --------------------------------------------------------------------------------------


def safe_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: formulas (and cells that could hide one behind a tab
    or carriage return) get a leading apostrophe (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    if text.startswith(DANGEROUS_FIRST):
        return "'" + text
    return text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """RFC 4180 CSV (CRLF line ends, quoting where needed) with every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


TABLE_HEADER: Final = (
    "camera_id",
    "camera",
    "location",
    "restaurant_id",
    "restaurant",
    "district",
    "state",
    "since_utc",
    "cause",
    "detail",
    "uptime_24h",
    "uptime_7d",
    "last_snapshot_utc",
)


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def table_csv(rows: Iterable[Row]) -> str:
    """The board table as CSV (uptimes as ratios 0-1, times in UTC)."""
    return to_csv(
        TABLE_HEADER,
        (
            (
                r.camera_id,
                r.camera_name,
                r.location,
                r.restaurant_id,
                r.restaurant_name,
                r.district,
                r.state.value,
                iso(r.since),
                r.cause,
                r.detail,
                _ratio(r.uptime_24h),
                _ratio(r.uptime_7d),
                iso(r.last_snapshot),
            )
            for r in rows
        ),
    )


EVENTS_HEADER: Final = (
    "event_id",
    "time_utc",
    "camera_id",
    "camera",
    "restaurant_id",
    "restaurant",
    "district",
    "from",
    "to",
    "cause",
    "detail",
    "measures",
    "snapshot_sha256",
    "last_good_sha256",
)


def events_csv(events: Iterable[Event], names: Mapping[str, tuple[str, str]]) -> str:
    """Events as CSV; ``names`` maps a camera id to its camera and restaurant names."""

    def line(e: Event) -> tuple[object, ...]:
        camera, restaurant = names.get(e.camera_id, ("", ""))
        measures = " ".join(f"{k}={v:g}" for k, v in sorted(e.measures.items()))
        return (
            e.id,
            iso(e.t),
            e.camera_id,
            camera,
            e.restaurant_id,
            restaurant,
            e.district,
            e.from_state.value,
            e.to_state.value,
            e.cause,
            e.detail,
            measures,
            e.snapshot or "",
            e.last_good or "",
        )

    return to_csv(EVENTS_HEADER, (line(e) for e in events))


@dataclass(frozen=True, slots=True)
class EventFilters:
    """Filters of the events export."""

    camera: str = ""
    restaurant: str = ""
    district: str = ""
    state: State | None = None
    since: float | None = None
    until: float | None = None

    def keeps(self, event: Event) -> bool:
        """Whether ``event`` passes every filter."""
        return (
            (not self.camera or event.camera_id == self.camera)
            and (not self.restaurant or event.restaurant_id == self.restaurant)
            and (not self.district or event.district == self.district)
            and (self.state is None or event.to_state is self.state)
            and (self.since is None or event.t >= self.since)
            and (self.until is None or event.t <= self.until)
        )


def parse_event_filters(query: Mapping[str, str]) -> EventFilters:
    """Event filters from a query string (``state`` is the state entered); ``ValueError``."""
    board = parse_filters({"state": query.get("state", "")})
    since = parse_time(query.get("since", ""))
    until = parse_time(query.get("until", ""))
    if since is not None and until is not None and until < since:
        raise ValueError("until must not be before since")
    return EventFilters(
        camera=query.get("camera", "").strip(),
        restaurant=query.get("restaurant", "").strip(),
        district=query.get("district", "").strip(),
        state=board.state,
        since=since,
        until=until,
    )
