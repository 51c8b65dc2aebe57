"""The board's pure core: filters, sorting, tiles, pages, times and CSV neutralisation."""

from __future__ import annotations

import csv
import io

import pytest

from kitchencam.boardview import (
    Filters,
    Row,
    events_csv,
    page_of,
    parse_event_filters,
    parse_filters,
    parse_time,
    safe_cell,
    select,
    table_csv,
    tile_counts,
    to_csv,
)
from kitchencam.compliance.records import Event
from kitchencam.compliance.states import State


def row(cid: str, restaurant: str, district: str, state: State, **extra: object) -> Row:
    return Row(
        camera_id=cid,
        camera_name=extra.pop("camera_name", f"cam {cid}"),  # type: ignore[arg-type]
        location="pass",
        restaurant_id="r-" + restaurant.lower().replace(" ", "-"),
        restaurant_name=restaurant,
        district=district,
        state=state,
        since=float(extra.pop("since", 100.0)),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


ROWS = [
    row("c1", "Golden Wok", "Wan Chai", State.COVERED, since=300.0, uptime_24h=0.5),
    row("c2", "Golden Wok", "Wan Chai", State.OK, since=100.0, uptime_24h=1.0),
    row("c3", "Noodle Bar", "Central", State.OK, since=200.0),
    row("c4", "dim sum house", "Central", State.UNMONITORED, since=50.0, uptime_24h=0.9),
    row("c5", "Noodle Bar", "Central", State.OFFLINE, since=400.0, uptime_24h=0.0),
]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+41 79 000", "'+41 79 000"),
        ("-5", "'-5"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=cmd", "'\t=cmd"),
        ("\r=cmd", "'\r=cmd"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("Golden Wok", "Golden Wok"),
        ("a=b", "a=b"),
        (" =1", " =1"),
        ("", ""),
        (None, ""),
        (0.5, "0.5"),
    ],
)
def test_safe_cell_neutralises_formulas(value: object, cell: str) -> None:
    assert safe_cell(value) == cell


def test_csv_is_rfc4180_and_round_trips() -> None:
    text = to_csv(["a", "b"], [['he said "hi", then left', "line\nbreak"], ["=1", "ok"]])
    assert text.endswith("\r\n")
    assert '"he said ""hi"", then left"' in text
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [["a", "b"], ['he said "hi", then left', "line\nbreak"], ["'=1", "ok"]]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"state": "purple"}, "state must be one of"),
        ({"sort": "password"}, "sort must be one of"),
        ({"dir": "up"}, "dir must be"),
        ({"page": "x"}, "page must be a whole number"),
        ({"page": "0"}, "page must be 1 or more"),
        ({"q": "x" * 201}, "limited to 200"),
    ],
)
def test_bad_filters_say_what_is_wrong(query: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_filters(query)


def test_filters_parse_and_round_trip_to_a_query() -> None:
    f = parse_filters({"district": " Wan Chai ", "state": "ok", "q": "wok", "dir": "desc"})
    assert f == Filters(district="Wan Chai", state=State.OK, q="wok", descending=True)
    assert parse_filters(dict(_pairs(f.query()))) == f
    assert f.query(state=None) == "district=Wan+Chai&q=wok&dir=desc"
    assert parse_filters({}) == Filters()
    assert Filters().query() == ""
    # Sorting by the current key flips the direction; by another starts ascending.
    assert Filters(sort="since").sorted_by("since") == "sort=since&dir=desc"
    assert Filters(sort="since", descending=True).sorted_by("district") == "sort=district"


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query)


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ({}, ["c5", "c1", "c2", "c3", "c4"]),  # by state: faults first, then ok, then ours
        ({"district": "Central"}, ["c5", "c3", "c4"]),
        ({"state": "ok"}, ["c2", "c3"]),
        ({"q": "WOK"}, ["c1", "c2"]),
        ({"q": "c4"}, ["c4"]),
        ({"q": "central", "state": "offline"}, ["c5"]),
        ({"sort": "since"}, ["c4", "c2", "c3", "c1", "c5"]),
        ({"sort": "since", "dir": "desc"}, ["c5", "c1", "c3", "c2", "c4"]),
        ({"sort": "restaurant"}, ["c4", "c1", "c2", "c3", "c5"]),  # then by camera
        # Unknown uptime (c3) goes last in both directions.
        ({"sort": "uptime_24h"}, ["c5", "c1", "c4", "c2", "c3"]),
        ({"sort": "uptime_24h", "dir": "desc"}, ["c2", "c4", "c1", "c5", "c3"]),
        ({"district": "Nowhere"}, []),
    ],
)
def test_select_filters_and_sorts(query: dict[str, str], ids: list[str]) -> None:
    assert [r.camera_id for r in select(ROWS, parse_filters(query))] == ids


def test_tiles_count_the_scope_whatever_the_state_filter() -> None:
    counts = tile_counts(ROWS, parse_filters({"district": "Central", "state": "ok"}))
    assert counts[State.OK] == 1 and counts[State.OFFLINE] == 1
    assert counts[State.UNMONITORED] == 1 and counts[State.COVERED] == 0
    assert next(iter(counts)) is State.OFFLINE and len(counts) == len(State)
    assert sum(tile_counts(ROWS, Filters()).values()) == len(ROWS)


def test_pages() -> None:
    rows = [row(f"c{i}", "R", "D", State.OK) for i in range(5)]
    assert page_of(rows, 1, size=2) == (rows[0:2], 3)
    assert page_of(rows, 3, size=2) == (rows[4:5], 3)
    assert page_of(rows, 9, size=2) == (rows[4:5], 3)  # past the end: the last page
    assert page_of([], 1, size=2) == ([], 1)


@pytest.mark.parametrize(
    ("raw", "t"),
    [
        ("", None),
        ("1700000000", 1700000000.0),
        ("1700000000.5", 1700000000.5),
        ("2026-11-29", 1795910400.0),
        ("2026-11-29T08:30", 1795941000.0),
        ("2026-11-29T08:30:00Z", 1795941000.0),
        ("2026-11-29T10:30:00+02:00", 1795941000.0),
    ],
)
def test_parse_time(raw: str, t: float | None) -> None:
    assert parse_time(raw) == t


@pytest.mark.parametrize("raw", ["yesterday", "nan", "inf", "2026-13-01"])
def test_parse_time_refuses(raw: str) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_time(raw)


def test_event_filters() -> None:
    f = parse_event_filters({"state": "covered", "since": "2026-11-29", "district": "Central"})
    assert f.state is State.COVERED and f.since == 1795910400.0 and f.until is None
    with pytest.raises(ValueError, match="until must not be before since"):
        parse_event_filters({"since": "200", "until": "100"})
    with pytest.raises(ValueError, match="state must be one of"):
        parse_event_filters({"state": "bad"})


def test_table_and_events_csv_neutralise_every_cell() -> None:
    evil = row("c9", "=cmd|' /C calc'!A0", "@district", State.DARK, camera_name="+cam")
    text = table_csv([evil])
    lines = list(csv.reader(io.StringIO(text, newline="")))
    assert lines[0][0] == "camera_id"
    assert lines[1][1] == "'+cam" and lines[1][4] == "'=cmd|' /C calc'!A0"
    assert lines[1][5] == "'@district" and lines[1][6] == "dark"
    assert lines[1][7] == "1970-01-01T00:01:40Z"
    event = Event(
        id="1-0",
        camera_id="c9",
        restaurant_id="r",
        district="-D",
        t=0.0,
        from_state=State.OK,
        to_state=State.DARK,
        cause="dark",
        detail="=2+2",
        measures={"luminance.mean": 3.25},
    )
    lines = list(csv.reader(io.StringIO(events_csv([event], {"c9": ("+cam", "@r")}), newline="")))
    assert lines[1][3] == "'+cam" and lines[1][5] == "'@r" and lines[1][6] == "'-D"
    assert lines[1][10] == "'=2+2" and lines[1][11] == "luminance.mean=3.25"
