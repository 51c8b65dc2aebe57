"""The regulators' board through the real app, real Redis and the real checker path: who may
see it, tiles and table from published states, CSV exports, acknowledgements in the audit log,
and live updates over server-sent events (deadline, resume, shutdown)."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kitchencam import appkeys, keys
from kitchencam.accounts import Accounts
from kitchencam.compliance.checker import Checker
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.compliance.records import Kind, News
from tests.browsing import REGULATOR_PASSWORD, add_regulator, csrf_from, sign_in, token_for
from tests.conftest import AppFactory
from tests.helpers import add_camera, register

Client = TestClient[web.Request, web.Application]
STREAM_DEADLINE_S = 4.0
"""A change reaches a connected board within this (the feed polls every second)."""


async def say(client: Client, cid: str, kind: Kind, t: float, to: str, **extra: Any) -> None:
    """A relay's news about a camera, applied at once by a real checker."""
    app = client.app
    assert app is not None
    compliance = app[appkeys.COMPLIANCE]
    camera = await compliance.registry.get_camera(cid)
    snaps = extra.pop("snaps", ())
    if kind in (Kind.HELD, Kind.MONITOR):
        await compliance.store.refresh_held([cid], "relay-1")
    news = News(kind=kind, camera=cid, t=t, to_state=to, cause=to, relay="relay-1", **extra)
    await compliance.store.publish(news, snaps, camera.restaurant_id)
    checker = Checker(compliance.store, compliance.registry, "checker-a")
    await checker.ensure_groups()
    while await checker.read_once(block_ms=10):
        pass


async def world(client: Client) -> dict[str, str]:
    """Two restaurants in two districts, three cameras: covered, ok, never analysed."""
    rid1, tok1 = await register(client, name='<b>Wok & "Co"</b>', district="Wan Chai")
    rid2, tok2 = await register(client, name="=HYPERLINK(1)", district="Central")
    cam1 = (await add_camera(client, rid1, tok1, name="Wok line"))["id"]
    cam2 = (await add_camera(client, rid1, tok1, name="Cold room"))["id"]
    cam3 = (await add_camera(client, rid2, tok2, name="+Fryer"))["id"]
    t0 = time.time() - 3600
    await say(client, cam1, Kind.HELD, t0, "ok")
    await say(client, cam2, Kind.HELD, t0, "ok")
    await say(client, cam1, Kind.MONITOR, t0 + 600, "covered", from_state="ok")
    return {"rid1": rid1, "rid2": rid2, "cam1": cam1, "cam2": cam2, "cam3": cam3}


async def regulator(client: Client) -> None:
    """Sign this client in as a regulator."""
    name = await add_regulator(client)
    assert (await sign_in(client, name, REGULATOR_PASSWORD)).status == 303


def tiles(html: str) -> dict[str, int]:
    found = re.findall(
        r'class="board-tile state-(\w+)[^"]*" data-state="\w+".*?data-count>(\d+)<', html, re.S
    )
    return {state: int(n) for state, n in found}


def table(html: str) -> list[tuple[str, str]]:
    """(camera id, state) of each table row, in order."""
    return re.findall(r'<tr data-camera="([^"]+)" data-state="(\w+)">', html)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


# -- who may see it ---------------------------------------------------------------------------


async def test_every_board_route_needs_a_signed_in_regulator(client: Client) -> None:
    w = await world(client)
    cid = w["cam1"]
    eid = str((await client.app[appkeys.REDIS].zrange(keys.camera_events(cid), -1, -1))[0])
    sha = "a" * 64
    paths = [
        "/board",
        "/board?state=covered",
        "/board/stream",
        "/board/export.csv",
        "/board/events.csv",
        f"/board/cameras/{cid}",
        "/board/audit",
        f"/board/snapshots/{sha}",
        f"/board/cameras/{cid}/preview.jpg",
        f"/board/cameras/{cid}/reference.jpg",
    ]
    ack = f"/board/cameras/{cid}/events/{eid}/ack"
    # Nobody signed in: sent to sign in, and back here afterwards.
    for path in paths:
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/signin?next=/board"), path
    token = csrf_from(await (await client.get("/signin")).text())
    resp = await client.post(ack, data={"note": "x", "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/signin")
    # A restaurant's session: refused.
    await Accounts(client.app[appkeys.REDIS]).create(
        "chef@wok.example", w["rid1"], "kitchen pass 1"
    )
    assert (await sign_in(client, "chef@wok.example", "kitchen pass 1")).status == 303
    token = await token_for(client)
    for path in paths:
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 403, path
    resp = await client.post(ack, data={"note": "x", "csrf_token": token}, allow_redirects=False)
    assert resp.status == 403
    assert await client.app[appkeys.REDIS].exists(keys.AUDIT) == 0


# -- tiles, table, exports --------------------------------------------------------------------


async def test_tiles_and_table_match_the_checkers_states(client: Client) -> None:
    w = await world(client)
    await regulator(client)
    html = await (await client.get("/board")).text()
    counts = tiles(html)
    assert counts["covered"] == 1 and counts["ok"] == 1 and counts["unmonitored"] == 1
    assert sum(counts.values()) == 3
    assert table(html) == [(w["cam1"], "covered"), (w["cam2"], "ok"), (w["cam3"], "unmonitored")]
    # Uptime counts from registration (just now): cam1 covered since, cam2 ok, cam3 unknown.
    row = {
        c: html.split(f'data-camera="{w[c]}"')[1].split("</tr>")[0]
        for c in ("cam1", "cam2", "cam3")
    }
    assert row["cam1"].count("0.0 %") == 2 and row["cam2"].count("100.0 %") == 2
    assert row["cam3"].count("—") >= 2

    html = await (await client.get("/board?district=Central")).text()
    assert table(html) == [(w["cam3"], "unmonitored")]
    assert tiles(html)["covered"] == 0 and tiles(html)["unmonitored"] == 1
    # A state filter narrows the table; the tiles keep counting the whole scope.
    html = await (await client.get("/board?state=ok")).text()
    assert table(html) == [(w["cam2"], "ok")]
    assert tiles(html)["covered"] == 1
    html = await (await client.get("/board?q=cold")).text()
    assert table(html) == [(w["cam2"], "ok")]
    html = await (await client.get("/board?sort=camera&dir=desc")).text()
    assert [cid for cid, _ in table(html)] == [w["cam1"], w["cam2"], w["cam3"]]
    # Sorting by uptime needs every row's uptime, not one page's; unknown uptime last.
    html = await (await client.get("/board?sort=uptime_24h&dir=desc")).text()
    assert [cid for cid, _ in table(html)] == [w["cam2"], w["cam1"], w["cam3"]]
    resp = await client.get("/board?state=purple")
    assert resp.status == 400 and "state must be one of" in await resp.text()


async def test_html_in_names_is_escaped(client: Client) -> None:
    w = await world(client)
    await regulator(client)
    for path in ("/board", f"/board/cameras/{w['cam1']}"):
        html = await (await client.get(path)).text()
        assert "&lt;b&gt;Wok &amp; &#34;Co&#34;&lt;/b&gt;" in html, path
        assert "<b>Wok" not in html, path


async def test_table_export_is_the_filtered_table_with_formulas_neutralised(
    client: Client,
) -> None:
    w = await world(client)
    await regulator(client)
    resp = await client.get("/board/export.csv?district=Central")
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
    lines = rows_of(await resp.text())
    assert lines[0][:3] == ["camera_id", "camera", "location"]
    assert [line[0] for line in lines[1:]] == [w["cam3"]]
    assert lines[1][1] == "'+Fryer" and lines[1][4] == "'=HYPERLINK(1)"
    lines = rows_of(await (await client.get("/board/export.csv?sort=camera")).text())
    assert [line[0] for line in lines[1:]] == [w["cam3"], w["cam2"], w["cam1"]]
    assert lines[3][4] == '<b>Wok & "Co"</b>'  # CSV is not HTML: kept as written
    assert [line[10] for line in lines[1:]] == ["", "1.0000", "0.0000"]  # uptime 24 h


async def test_events_export_with_filters(client: Client) -> None:
    w = await world(client)
    await regulator(client)
    lines = rows_of(await (await client.get("/board/events.csv")).text())
    assert lines[0][:3] == ["event_id", "time_utc", "camera_id"]
    assert sorted((line[2], line[8]) for line in lines[1:]) == sorted(
        [(w["cam1"], "ok"), (w["cam1"], "covered"), (w["cam2"], "ok")]
    )
    lines = rows_of(await (await client.get("/board/events.csv?state=covered")).text())
    assert [(line[2], line[7], line[8]) for line in lines[1:]] == [(w["cam1"], "ok", "covered")]
    assert lines[1][5] == '<b>Wok & "Co"</b>' and lines[1][6] == "Wan Chai"
    lines = rows_of(await (await client.get(f"/board/events.csv?camera={w['cam2']}")).text())
    assert [line[2] for line in lines[1:]] == [w["cam2"]]
    lines = rows_of(await (await client.get("/board/events.csv?district=Central")).text())
    assert len(lines) == 1
    recent = time.time() - 3600 + 300  # after the held news, before the covered one
    resp = await client.get(f"/board/events.csv?since={recent}")
    assert [line[8] for line in rows_of(await resp.text())[1:]] == ["covered"]
    resp = await client.get(f"/board/events.csv?until={recent}")
    assert [line[8] for line in rows_of(await resp.text())[1:]] == ["ok", "ok"]
    # The board's own export links carry its filters.
    page = await (await client.get("/board?district=Wan+Chai&state=covered")).text()
    links = re.findall(r'href="(/board/(?:export|events)\.csv\?[^"]*)"', page)
    table_link, events_link = (html.unescape(link) for link in links)
    assert [line[0] for line in rows_of(await (await client.get(table_link)).text())[1:]] == [
        w["cam1"]
    ]
    lines = rows_of(await (await client.get(events_link)).text())
    assert [(line[2], line[8]) for line in lines[1:]] == [(w["cam1"], "covered")]
    resp = await client.get("/board/events.csv?since=yesterday")
    assert resp.status == 400


# -- camera page and acknowledgements ---------------------------------------------------------


async def test_camera_page_shows_evidence_and_acks_go_to_the_audit_log(
    client: Client,
) -> None:
    w = await world(client)
    snap = JpegSnapshot.of(b"\xff\xd8 flagged frame \xff\xd9")
    good = JpegSnapshot.of(b"\xff\xd8 last good \xff\xd9")
    await say(
        client,
        w["cam2"],
        Kind.MONITOR,
        time.time(),
        "dark",
        from_state="ok",
        measures={"luminance.mean": 4.5},
        snapshot=snap.sha256,
        last_good=good.sha256,
        snaps=(snap, good),
    )
    redis = client.app[appkeys.REDIS]
    eid = str((await redis.zrange(keys.camera_events(w["cam2"]), -1, -1))[0])
    await regulator(client)
    page = await client.get(f"/board/cameras/{w['cam2']}")
    html = await page.text()
    assert f'id="event-{eid}"' in html
    assert f"/board/snapshots/{snap.sha256}" in html and f"/board/snapshots/{good.sha256}" in html
    assert "luminance.mean" in html and "4.5" in html
    assert f'data-whep="/whep/{w["cam2"]}"' in html
    resp = await client.get(f"/board/snapshots/{snap.sha256}")
    assert resp.status == 200 and await resp.read() == snap.data
    token = csrf_from(html)
    ack = f"/board/cameras/{w['cam2']}/events/{eid}/ack"

    # No token, a forged one, a blank note: refused, nothing written.
    resp = await client.post(ack, data={"note": "called them"}, allow_redirects=False)
    assert resp.status == 403
    resp = await client.post(
        ack, data={"note": "called them", "csrf_token": "forged"}, allow_redirects=False
    )
    assert resp.status == 403
    resp = await client.post(ack, data={"note": "  ", "csrf_token": token}, allow_redirects=False)
    assert resp.status == 422
    resp = await client.post(
        f"/board/cameras/{w['cam1']}/events/{eid}/ack",
        data={"note": "wrong camera", "csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 404
    assert await redis.exists(keys.AUDIT) == 0

    before = time.time()
    note = "Called the manager <script>alert(1)</script>; light fixed"
    resp = await client.post(ack, data={"note": note, "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/board/cameras/{w['cam2']}#event-{eid}"
    entries: Any = await redis.xrange(keys.AUDIT)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields["who"] == "regulator:inspector" and fields["event"] == eid
    assert fields["note"] == note and fields["camera"] == w["cam2"]
    assert before <= float(fields["t"]) <= time.time()
    assert await redis.ttl(keys.AUDIT) == -1  # never expires

    html = await (await client.get(f"/board/cameras/{w['cam2']}")).text()
    assert "regulator:inspector</strong> acknowledged" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    html = await (await client.get("/board/audit")).text()
    assert "regulator:inspector" in html and eid in html and "&lt;script&gt;" in html
    # No route edits or deletes the log.
    for method in ("PUT", "PATCH", "DELETE"):
        resp = await client.request(
            method, "/board/audit", headers={"X-CSRF-Token": token}, allow_redirects=False
        )
        assert resp.status == 405, method
    entries = await redis.xrange(keys.AUDIT)
    assert len(entries) == 1


async def test_only_events_that_raise_a_flag_can_be_acknowledged(client: Client) -> None:
    w = await world(client)
    redis = client.app[appkeys.REDIS]
    held, covered = [str(e) for e in await redis.zrange(keys.camera_events(w["cam1"]), 0, -1)]
    await regulator(client)
    html = await (await client.get(f"/board/cameras/{w['cam1']}")).text()
    token = csrf_from(html)
    # The form is offered for the covered event only, and the page reads words, not codes.
    assert f'action="/board/cameras/{w["cam1"]}/events/{covered}/ack"' in html
    assert f'action="/board/cameras/{w["cam1"]}/events/{held}/ack"' not in html
    assert "Lens covered: something is blocking the camera." in html
    assert ">covered<" not in html

    resp = await client.post(
        f"/board/cameras/{w['cam1']}/events/{held}/ack",
        data={"note": "nothing to see", "csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 422
    assert "only events that raise a flag can be acknowledged" in await resp.text()
    assert await redis.exists(keys.AUDIT) == 0
    resp = await client.post(
        f"/board/cameras/{w['cam1']}/events/{covered}/ack",
        data={"note": "called them", "csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 303
    entries: Any = await redis.xrange(keys.AUDIT)
    assert len(entries) == 1


# -- live updates -----------------------------------------------------------------------------


async def next_event(resp: Any, timeout_s: float) -> dict[str, str]:
    """The next server-sent event (comments and ``retry`` skipped) as its fields."""
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no server-sent event in time"
        line = (await asyncio.wait_for(resp.content.readline(), left)).decode()
        if line in ("\n", ""):
            if "event" in fields:
                return fields
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.rstrip("\n").partition(": ")
        fields[name] = value


async def wait_for(probe: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def caught_up(client: Client) -> None:
    """Wait until the app's feed has read every board change written so far."""
    feed = client.app[appkeys.BOARD_FEED]
    newest: Any = await client.app[appkeys.REDIS].xrevrange(keys.BOARD, count=1)
    await wait_for(lambda: feed.position == str(newest[0][0]), "the feed caught up")


async def test_a_state_change_reaches_a_connected_board_within_the_deadline(
    client: Client,
) -> None:
    w = await world(client)
    await regulator(client)
    feed = client.app[appkeys.BOARD_FEED]
    await caught_up(client)
    resp = await client.get("/board/stream")
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    await wait_for(lambda: len(feed.subscribers) == 1, "the stream subscribed")
    metrics = await (await client.get("/metrics")).text()
    assert "kitchencam_board_streams 1.0" in metrics

    started = time.monotonic()
    await say(client, w["cam2"], Kind.MONITOR, time.time(), "frozen", from_state="ok")
    event = await next_event(resp, STREAM_DEADLINE_S)
    took = time.monotonic() - started
    assert event["event"] == "state"
    data = json.loads(event["data"])
    assert data["camera_id"] == w["cam2"] and data["state"] == "frozen"
    assert data["district"] == "Wan Chai" and data["restaurant_id"] == w["rid1"]
    newest: Any = await client.app[appkeys.REDIS].xrevrange(keys.BOARD, count=1)
    assert event["id"] == newest[0][0]
    assert took < STREAM_DEADLINE_S
    resp.close()
    await wait_for(lambda: not feed.subscribers, "the stream unsubscribed", timeout_s=20)


async def test_a_board_resumes_after_last_event_id_or_resyncs(client: Client) -> None:
    w = await world(client)
    await regulator(client)
    redis = client.app[appkeys.REDIS]
    newest: Any = await redis.xrevrange(keys.BOARD, count=1)
    seen = str(newest[0][0])
    await say(client, w["cam2"], Kind.MONITOR, time.time(), "blurred", from_state="ok")
    await say(client, w["cam1"], Kind.MONITOR, time.time(), "ok", from_state="covered")
    await caught_up(client)

    resp = await client.get("/board/stream", headers={"Last-Event-ID": seen})
    first = await next_event(resp, STREAM_DEADLINE_S)
    second = await next_event(resp, STREAM_DEADLINE_S)
    assert [json.loads(e["data"])["state"] for e in (first, second)] == ["blurred", "ok"]
    resp.close()
    # The page's own starting point works the same way (EventSource cannot set the header).
    resp = await client.get(f"/board/stream?since={first['id']}")
    assert json.loads((await next_event(resp, STREAM_DEADLINE_S))["data"])["state"] == "ok"
    resp.close()
    # Entries trimmed away since: the board is told to reload its table.
    await redis.xtrim(keys.BOARD, maxlen=1, approximate=False)
    resp = await client.get("/board/stream", headers={"Last-Event-ID": seen})
    event = await next_event(resp, STREAM_DEADLINE_S)
    assert event["event"] == "resync" and event["id"] == second["id"]
    resp.close()


async def test_a_lagging_board_gets_a_resync_not_unbounded_memory(client: Client) -> None:
    from kitchencam.boardfeed import QUEUE_LENGTH, Signal

    await regulator(client)
    feed = client.app[appkeys.BOARD_FEED]
    await asyncio.wait_for(feed.started(), 5)
    sub, _ = feed.subscribe()  # a board that never reads
    redis = client.app[appkeys.REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(QUEUE_LENGTH + 5):
            pipe.xadd(keys.BOARD, {"camera": f"c{i}", "state": "ok"})
        await pipe.execute()
    await wait_for(lambda: feed.resyncs >= 1, "the lagging board was dropped")
    assert sub.queue.qsize() <= QUEUE_LENGTH
    assert sub.queue.get_nowait() is Signal.RESYNC
    feed.unsubscribe(sub)


async def test_open_streams_end_when_the_app_stops(make_app: AppFactory) -> None:
    client: Client = TestClient(TestServer(make_app()))
    await client.start_server()
    await add_regulator(client)
    assert (await sign_in(client, "inspector", REGULATOR_PASSWORD)).status == 303
    resp = await client.get("/board/stream")
    assert resp.status == 200
    feed = client.app[appkeys.BOARD_FEED]
    await wait_for(lambda: len(feed.subscribers) == 1, "the stream subscribed")
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 5.0
    assert not feed.subscribers


async def test_the_checker_announces_state_changes_and_deletions_only(client: Client) -> None:
    w = await world(client)
    redis = client.app[appkeys.REDIS]

    async def board() -> Any:
        return await redis.xrange(keys.BOARD)

    async def announced(cid: str) -> list[str]:
        return [f["state"] for _, f in await board() if f["camera"] == cid]

    assert (await announced(w["cam1"]))[-2:] == ["ok", "covered"]
    assert await announced(w["cam3"]) == ["unmonitored"]  # its first stored state
    before = len(await board())
    await say(client, w["cam1"], Kind.HELD, time.time(), "covered")  # same state again
    assert len(await board()) == before
    compliance = client.app[appkeys.COMPLIANCE]
    await compliance.registry.delete_camera(w["cam3"])
    checker = Checker(compliance.store, compliance.registry, "checker-a")
    while await checker.read_once(block_ms=10):
        pass
    assert await announced(w["cam3"]) == ["unmonitored", ""]
    assert (await board())[-1][1] == {"camera": w["cam3"], "state": ""}


async def test_audit_log_pages_newest_first_and_checks_notes(client: Client) -> None:
    from kitchencam.audit import MAX_NOTE_LENGTH, AuditLog, NoteError, check_note
    from kitchencam.compliance.records import Event
    from kitchencam.compliance.states import State

    log = AuditLog(client.app[appkeys.REDIS])
    event = Event(
        id="1-0",
        camera_id="cam",
        restaurant_id="r",
        district="d",
        t=1.0,
        from_state=State.OK,
        to_state=State.DARK,
        cause="dark",
        detail="",
    )
    written = [await log.acknowledge(event, "regulator:a", f"note {i}") for i in range(3)]
    first = await log.page(count=2)
    assert [e.note for e in first] == ["note 2", "note 1"]
    assert [e.note for e in await log.page(before=first[-1].id, count=2)] == ["note 0"]
    assert [e.id for e in await log.of_camera("cam")] == [e.id for e in reversed(written)]
    assert list(AuditLog.by_event(written)) == ["1-0"]
    assert check_note("  fixed\r\nthanks ") == "fixed\nthanks"
    for bad in ("", "   ", "x" * (MAX_NOTE_LENGTH + 1), "bell\x07"):
        with pytest.raises(NoteError):
            check_note(bad)
