"""The regulators' compliance board: pages, the live stream, evidence pictures, CSV exports.

Thin views: every route first checks that a regulator is signed in
(``sessions.require(request, "regulator")``: anonymous browsers are sent to sign in, other
accounts get 403), then parses its query with ``kitchencam.boardview``, reads through
``kitchencam.boarddata`` / ``kitchencam.audit``, and renders. Live updates come from
``kitchencam.boardfeed`` over server-sent events at ``/board/stream``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from kitchencam import appkeys, keys, pages, sessions, wording
from kitchencam.audit import AuditLog, NoteError, check_note
from kitchencam.auth import Principal
from kitchencam.boarddata import BoardData
from kitchencam.boardfeed import (
    KEEPALIVE_S,
    RETRY_MS,
    BoardFeed,
    Change,
    FeedCollector,
    Signal,
    Subscriber,
    sse,
)
from kitchencam.boardview import (
    DETAIL_SORTS,
    STATE_ORDER,
    Filters,
    in_scope,
    page_of,
    parse_event_filters,
    parse_filters,
    percent,
    select,
    table_csv,
    tile_counts,
)
from kitchencam.boardview import events_csv as render_events_csv
from kitchencam.compliance.records import CameraState, entry_order
from kitchencam.compliance.uptime import WINDOWS_S, uptime
from kitchencam.compliance.uptime import Change as UptimeChange
from kitchencam.httperrors import ApiError
from kitchencam.registry import NotFound
from kitchencam.roles import cancel_and_wait

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CAMERA_EVENTS_SHOWN: Final = 100
"""Events on a camera page (older ones are in the events export)."""
SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: pass events through at once
}


def setup(app: web.Application) -> None:
    """Give ``app`` the board routes, its live feed (one reader per process) and metrics."""
    feed = BoardFeed(app[appkeys.REDIS])
    app[appkeys.BOARD_FEED] = feed
    app[appkeys.METRICS].registry.register(FeedCollector(feed))
    app.router.add_routes(routes)

    # on_startup/on_shutdown rather than a cleanup_ctx: the reader must start after Redis is
    # reached (cleanup contexts start first), and open streams must end in on_shutdown, before
    # the server waits for running handlers (which would otherwise wait for its timeout).
    readers: list[asyncio.Task[None]] = []

    async def start(app: web.Application) -> None:
        readers.append(asyncio.create_task(feed.run(), name="board-feed"))

    async def stop(app: web.Application) -> None:
        feed.close()
        await cancel_and_wait(*readers)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def _data(request: web.Request) -> BoardData:
    compliance = request.app[appkeys.COMPLIANCE]
    return BoardData(compliance.registry, compliance.store)


def _filters(query: Mapping[str, str]) -> Filters:
    try:
        return parse_filters(query)
    except ValueError as err:
        raise ApiError(400, str(err)) from None


# -- the board ----------------------------------------------------------------------------


@routes.get("/board")
async def board(request: web.Request) -> web.Response:
    """Tiles by state, the filtered and sorted camera table, and the live stream's start."""
    await sessions.require(request, "regulator")
    f = _filters(request.query)
    since = await request.app[appkeys.BOARD_FEED].latest()  # before reading: nothing missed
    data = _data(request)
    rows = await data.rows()
    shown = select(rows, f)
    if f.sort in DETAIL_SORTS:
        shown = select(await data.detailed(shown), f)
    page_rows, page_count = page_of(shown, f.page)
    if f.sort not in DETAIL_SORTS:
        page_rows = await data.detailed(page_rows)
    scope = {r.camera_id: r.state.value for r in rows if in_scope(r, f)}
    districts = sorted({r.district for r in rows if r.district})
    return await pages.render(
        request,
        "board.html",
        filters=f,
        tiles=tile_counts(rows, f),
        rows=page_rows,
        total=len(shown),
        page=min(f.page, page_count),
        pages=page_count,
        districts=districts,
        scope=scope,
        since=since,
        states=STATE_ORDER,
        words=wording.for_scripts(),
        percent=percent,
    )


@routes.get("/board/export.csv")
async def export_table(request: web.Request) -> web.Response:
    """The filtered, sorted camera table (every page of it) as CSV."""
    await sessions.require(request, "regulator")
    f = _filters(request.query)
    data = _data(request)
    rows = select(await data.detailed(select(await data.rows(), f)), f)
    return _csv(table_csv(rows), "board")


@routes.get("/board/events.csv")
async def export_events(request: web.Request) -> web.Response:
    """Events as CSV; filters ``camera``, ``restaurant``, ``district``, ``state`` (the state
    entered), ``since``/``until`` (Unix seconds or ISO dates, UTC)."""
    await sessions.require(request, "regulator")
    try:
        f = parse_event_filters(request.query)
    except ValueError as err:
        raise ApiError(400, str(err)) from None
    data = _data(request)
    events = await data.events(f)
    names = await data.names([e.camera_id for e in events])
    return _csv(render_events_csv(events, names), "events")


def _csv(text: str, what: str) -> web.Response:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="kitchencam-{what}-{stamp}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- the live stream ----------------------------------------------------------------------


@routes.get("/board/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``state`` (a camera's new published state; id: the ``kc:board``
    entry), ``resync`` (changes were lost: reload the table). Resumes after ``Last-Event-ID``
    or the ``since`` query parameter (the id the page was rendered at)."""
    await sessions.require(request, "regulator")
    feed = request.app[appkeys.BOARD_FEED]
    resume = request.headers.get("Last-Event-ID") or request.query.get("since") or None
    sub, upto = feed.subscribe()
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        last = upto
        if resume is not None:
            backlog = await feed.replay(resume, upto)
            if backlog is None:
                await response.write(sse("resync", "{}", upto))
            else:
                for change in backlog:
                    await response.write(change.message())
                if entry_order(resume) > entry_order(last):
                    last = resume
        await _pump(response, feed, sub, last)
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        feed.unsubscribe(sub)
    return response


async def _pump(response: web.StreamResponse, feed: BoardFeed, sub: Subscriber, last: str) -> None:
    """Write queued changes (newer than ``last``) and keep-alives until the stream closes."""
    while True:
        try:
            item: Change | Signal = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")
            continue
        if item is Signal.CLOSE:
            return
        if item is Signal.RESYNC:
            await response.write(sse("resync", "{}", feed.position))
            last = feed.position
            continue
        assert isinstance(item, Change)
        if entry_order(item.id) <= entry_order(last):
            continue  # already replayed from the stream
        await response.write(item.message())
        last = item.id


# -- one camera ---------------------------------------------------------------------------


@routes.get("/board/cameras/{cid}")
async def camera_page(request: web.Request) -> web.Response:
    """Live view, state, uptime, reference view, and the event timeline with evidence,
    measured values, acknowledgements and the form to acknowledge."""
    await sessions.require(request, "regulator")
    cid = request.match_info["cid"]
    compliance = request.app[appkeys.COMPLIANCE]
    camera = await compliance.registry.get_camera(cid)
    try:
        restaurant = await compliance.registry.get_restaurant(camera.restaurant_id)
    except NotFound:
        restaurant = None
    district = restaurant.district if restaurant is not None else ""
    state = await compliance.store.state(cid) or CameraState.initial(camera, district)
    data = _data(request)
    events = await data.camera_events(cid, CAMERA_EVENTS_SHOWN)
    now = time.time()
    window = await compliance.store.events_between(
        keys.camera_events(cid), now - max(WINDOWS_S.values()), now
    )
    changes = [UptimeChange(e.t, e.from_state, e.to_state) for e in window]
    uptimes = {
        name: uptime(
            changes, start=now - span, end=now, current=state.state, known_since=camera.created_at
        ).ratio
        for name, span in WINDOWS_S.items()
    }
    acks = AuditLog.by_event(await AuditLog(request.app[appkeys.REDIS]).of_camera(cid))
    reference = await compliance.store.reference(cid)
    preview = await compliance.store.preview(cid)
    return await pages.render(
        request,
        "board_camera.html",
        camera=camera,
        restaurant=restaurant,
        state=state,
        uptimes=uptimes,
        events=events,
        acks=acks,
        reference=reference,
        preview_t=None if preview is None else preview[1],
        percent=percent,
    )


@routes.post("/board/cameras/{cid}/events/{eid}/ack")
async def acknowledge(request: web.Request) -> web.Response:
    """Acknowledge an event with a note (the CSRF middleware has checked the form's token);
    the audit log records who, when and what. Only events that raise a flag (to a state
    other than ok, unmonitored or disabled) can be acknowledged. Back to the camera page."""
    who: Principal = await sessions.require(request, "regulator")
    cid, eid = request.match_info["cid"], request.match_info["eid"]
    event = await request.app[appkeys.COMPLIANCE].store.event(eid)
    if event is None or event.camera_id != cid:
        raise ApiError(404, "no such event of this camera (or it is older than the retention)")
    if not wording.raises_flag(event.to_state):
        raise ApiError(
            422,
            f"only events that raise a flag can be acknowledged; this one changed the camera to "
            f"{wording.check_title(event.to_state)!r}, which needs no action",
        )
    form = await request.post()
    raw = form.get("note")
    try:
        note = check_note(raw if isinstance(raw, str) else "")
    except NoteError as err:
        raise ApiError(422, str(err)) from None
    await AuditLog(request.app[appkeys.REDIS]).acknowledge(event, f"regulator:{who.ident}", note)
    log.info("camera %s: event %s acknowledged by regulator %s", cid, eid, who.ident)
    raise web.HTTPSeeOther(f"/board/cameras/{cid}#event-{eid}")


@routes.get("/board/audit")
async def audit_page(request: web.Request) -> web.Response:
    """The audit log, newest first, a page at a time (``before``: an entry id)."""
    await sessions.require(request, "regulator")
    before = request.query.get("before") or None
    try:
        entries = await AuditLog(request.app[appkeys.REDIS]).page(before)
    except ValueError:
        raise ApiError(400, "before must be an audit entry id") from None
    return await pages.render(request, "board_audit.html", entries=entries)


# -- pictures -----------------------------------------------------------------------------


def _jpeg(data: bytes, cache: str) -> web.Response:
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": cache})


@routes.get("/board/snapshots/{sha}")
async def snapshot(request: web.Request) -> web.Response:
    """An evidence JPEG by its SHA-256 (immutable)."""
    await sessions.require(request, "regulator")
    snap = await request.app[appkeys.COMPLIANCE].store.snapshot(request.match_info["sha"])
    if snap is None:
        raise ApiError(404, "no such picture (or it is older than the retention time)")
    return _jpeg(snap.jpeg, "private, max-age=86400, immutable")


@routes.get("/board/cameras/{cid}/preview.jpg")
async def preview(request: web.Request) -> web.Response:
    """The camera's latest preview picture."""
    await sessions.require(request, "regulator")
    found = await request.app[appkeys.COMPLIANCE].store.preview(request.match_info["cid"])
    if found is None:
        raise ApiError(404, "no recent picture of this camera")
    return _jpeg(found[0].data, "private, no-cache")


@routes.get("/board/cameras/{cid}/reference.jpg")
async def reference(request: web.Request) -> web.Response:
    """The camera's approved reference view."""
    await sessions.require(request, "regulator")
    jpeg = await request.app[appkeys.COMPLIANCE].store.reference_jpeg(request.match_info["cid"])
    if jpeg is None:
        raise ApiError(404, "no reference view approved yet")
    return _jpeg(jpeg, "private, no-cache")
