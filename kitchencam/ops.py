"""Operations endpoints: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import time

from aiohttp import web
from redis.exceptions import RedisError

from kitchencam import appkeys

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when Redis answers and every role of this process runs, else 503; JSON either way.

    While Redis is unreachable every role of the process waits for it (``waiting_for_redis``);
    each role's ``detail`` says what still works (a relay's viewers keep their media)."""
    app = request.app
    try:
        await app[appkeys.REDIS].ping()
        redis_ok, redis_state = True, "ok"
    except (RedisError, OSError) as err:
        redis_ok, redis_state = False, f"unreachable ({type(err).__name__})"
    roles = app[appkeys.ROLES]
    body: dict[str, object] = {
        "status": "ok" if redis_ok and roles.healthy() else "degraded",
        "redis": redis_state,
        "waiting_for_redis": [] if redis_ok else sorted(roles.states),
        "instance": roles.instance,
        "roles": {
            name: {"running": s.running, "detail": s.detail, "since": s.since}
            for name, s in roles.states.items()
        },
        "time": time.time(),
    }
    if appkeys.WORKERS in app:
        body["relay_workers"] = app[appkeys.WORKERS].status()
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    app = request.app
    m = app[appkeys.METRICS]
    if "web" in app[appkeys.ROLES].states:
        try:
            registry = app[appkeys.REGISTRY]
            m.restaurants.set(await registry.count_restaurants())
            m.cameras.set(await registry.count_cameras())
        except (RedisError, OSError):
            pass
    for name, state in app[appkeys.ROLES].states.items():
        m.role_up.labels(name).set(1 if state.running else 0)
    return web.Response(
        body=m.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )
