"""The JSON API under ``/api/v1``: thin views that parse, call the registry, and answer."""

from __future__ import annotations

import json

from aiohttp import web

from kitchencam import appkeys, keys
from kitchencam.auth import Principal, principal, require_access
from kitchencam.httperrors import ApiError, read_json
from kitchencam.models import (
    Camera,
    CameraCreate,
    CameraUpdate,
    RestaurantCreate,
    RestaurantUpdate,
)
from kitchencam.registry import MAX_PAGE

routes = web.RouteTableDef()
PREFIX = "/api/v1"


async def _shown(
    request: web.Request, who: Principal, cameras: list[Camera]
) -> list[dict[str, object]]:
    """Cameras as the caller may see them, each with its relay's live figures (``live``:
    state, codec, profile, resolution, fps, bitrate, keyframe interval, last packet age,
    reconnects, dropped pictures, viewers; ``null`` when no relay pulls it)."""
    if not cameras:
        return []
    raws = await request.app[appkeys.REDIS].mget([keys.live(c.id) for c in cameras])
    return [
        {**c.public(owner=who.owns(c.restaurant_id)), "live": json.loads(raw) if raw else None}
        for c, raw in zip(cameras, raws, strict=True)
    ]


def _page(request: web.Request) -> tuple[int, int]:
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise ApiError(400, "offset and limit must be whole numbers") from None
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, f"offset must be >= 0 and limit between 1 and {MAX_PAGE}")
    return offset, limit


@routes.get(PREFIX + "/me")
async def me(request: web.Request) -> web.Response:
    """Who the token belongs to."""
    who = await principal(request)
    return web.json_response({"kind": who.kind, "id": who.ident})


@routes.post(PREFIX + "/restaurants")
async def create_restaurant(request: web.Request) -> web.Response:
    """Register a restaurant; the answer holds its API token, shown only this once."""
    data = RestaurantCreate.model_validate(await read_json(request))
    restaurant, token = await request.app[appkeys.REGISTRY].create_restaurant(data)
    request.app[appkeys.METRICS].registrations.labels("restaurant").inc()
    return web.json_response(
        {"restaurant": restaurant.public(), "token": token},
        status=201,
        headers={"Location": f"{PREFIX}/restaurants/{restaurant.id}"},
    )


@routes.get(PREFIX + "/restaurants")
async def list_restaurants(request: web.Request) -> web.Response:
    """Every restaurant (regulators) or the caller's own (restaurants)."""
    who = await principal(request)
    registry = request.app[appkeys.REGISTRY]
    if who.is_regulator:
        offset, limit = _page(request)
        found = await registry.list_restaurants(offset, limit)
        total = await registry.count_restaurants()
    else:
        found, total = [await registry.get_restaurant(who.ident)], 1
    return web.json_response({"restaurants": [r.public() for r in found], "total": total})


@routes.get(PREFIX + "/restaurants/{rid}")
async def get_restaurant(request: web.Request) -> web.Response:
    """One restaurant."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid)
    restaurant = await request.app[appkeys.REGISTRY].get_restaurant(rid)
    return web.json_response(restaurant.public())


@routes.patch(PREFIX + "/restaurants/{rid}")
async def update_restaurant(request: web.Request) -> web.Response:
    """Change a restaurant's details (its own token only)."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    data = RestaurantUpdate.model_validate(await read_json(request))
    restaurant = await request.app[appkeys.REGISTRY].update_restaurant(rid, data)
    return web.json_response(restaurant.public())


@routes.delete(PREFIX + "/restaurants/{rid}")
async def delete_restaurant(request: web.Request) -> web.Response:
    """Remove a restaurant and all its cameras (its own token only)."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    await request.app[appkeys.REGISTRY].delete_restaurant(rid)
    return web.Response(status=204)


@routes.get(PREFIX + "/restaurants/{rid}/cameras")
async def list_restaurant_cameras(request: web.Request) -> web.Response:
    """A restaurant's cameras."""
    rid = request.match_info["rid"]
    who = await principal(request)
    require_access(who, rid)
    registry = request.app[appkeys.REGISTRY]
    await registry.get_restaurant(rid)
    cameras = await registry.list_cameras(rid)
    return web.json_response({"cameras": await _shown(request, who, cameras)})


@routes.post(PREFIX + "/restaurants/{rid}/cameras")
async def create_camera(request: web.Request) -> web.Response:
    """Register a camera (its restaurant's token only)."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    data = CameraCreate.model_validate(await read_json(request))
    camera = await request.app[appkeys.REGISTRY].create_camera(rid, data)
    request.app[appkeys.METRICS].registrations.labels("camera").inc()
    return web.json_response(
        camera.public(owner=True),
        status=201,
        headers={"Location": f"{PREFIX}/cameras/{camera.id}"},
    )


@routes.get(PREFIX + "/cameras")
async def list_cameras(request: web.Request) -> web.Response:
    """Every camera (regulators) or the caller's own (restaurants)."""
    who = await principal(request)
    registry = request.app[appkeys.REGISTRY]
    offset, limit = _page(request)
    rid = None if who.is_regulator else who.ident
    cameras = await registry.list_cameras(rid, offset, limit)
    return web.json_response({"cameras": await _shown(request, who, cameras)})


async def _camera_for(request: web.Request, who: Principal, *, write: bool) -> str:
    cid = request.match_info["cid"]
    camera = await request.app[appkeys.REGISTRY].get_camera(cid)
    require_access(who, camera.restaurant_id, write=write)
    return cid


@routes.get(PREFIX + "/cameras/{cid}")
async def get_camera(request: web.Request) -> web.Response:
    """One camera."""
    who = await principal(request)
    cid = await _camera_for(request, who, write=False)
    camera = await request.app[appkeys.REGISTRY].get_camera(cid)
    return web.json_response((await _shown(request, who, [camera]))[0])


@routes.patch(PREFIX + "/cameras/{cid}")
async def update_camera(request: web.Request) -> web.Response:
    """Change a camera (its restaurant); regulators may only switch ``enabled``."""
    who = await principal(request)
    body = await read_json(request)
    cid = await _camera_for(request, who, write=not (who.is_regulator and set(body) <= {"enabled"}))
    data = CameraUpdate.model_validate(body)
    camera = await request.app[appkeys.REGISTRY].update_camera(cid, data)
    return web.json_response(camera.public(owner=who.owns(camera.restaurant_id)))


@routes.delete(PREFIX + "/cameras/{cid}")
async def delete_camera(request: web.Request) -> web.Response:
    """Remove a camera (its restaurant's token only)."""
    who = await principal(request)
    cid = await _camera_for(request, who, write=True)
    await request.app[appkeys.REGISTRY].delete_camera(cid)
    return web.Response(status=204)
