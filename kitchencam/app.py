"""The application factory: one aiohttp app per process, holding the roles it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from kitchencam import api, appkeys, keys, ops, pages
from kitchencam.addresses import AddressPolicy, Resolver, SystemResolver
from kitchencam.compliance import api as compliance_api
from kitchencam.compliance import service as checker_service
from kitchencam.httperrors import errors_middleware
from kitchencam.metrics import Metrics
from kitchencam.registry import Registry
from kitchencam.relay import whep
from kitchencam.relay.figures import RelayCollector
from kitchencam.relay.hub import ObserverFactory, RelayHub
from kitchencam.relay.webrtc import IceSettings, ViewerHub, configure_host_addresses
from kitchencam.roles import RoleSet, heartbeat, instance_name, running_task
from kitchencam.secretbox import SecretBox, load_or_create_key
from kitchencam.settings import Settings
from kitchencam.users import Users

log = logging.getLogger(__name__)


REDIS_STARTUP_WAIT_S = 30.0


class StartupError(Exception):
    """The process cannot start; the message says what to do."""


def connect_redis(url: str) -> aioredis.Redis:
    """A Redis client for ``url`` (redis://, rediss://, unix://), answers decoded as text."""
    return aioredis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30, socket_connect_timeout=5
    )


def secret_box(settings: Settings) -> SecretBox:
    """The box for camera passwords, keyed from settings or the data directory."""
    if settings.secret_key is not None:
        return SecretBox(settings.secret_key.get_secret_value())
    return SecretBox(load_or_create_key(settings.data_dir))


async def check_key(redis: aioredis.Redis, box: SecretBox) -> None:
    """Refuse to start with a different password key than the data was stored with."""
    await redis.set(keys.META_SCHEMA, keys.SCHEMA_VERSION, nx=True)
    await redis.set(keys.META_KEY_CHECK, box.fingerprint, nx=True)
    if await redis.get(keys.META_KEY_CHECK) != box.fingerprint:
        raise StartupError(
            "this Redis holds camera passwords encrypted with another key; start every "
            "process with the same KITCHENCAM_SECRET_KEY (or the same data directory)"
        )


async def wait_for_redis(redis: aioredis.Redis, box: SecretBox) -> None:
    """Reach Redis, retrying with back-off for up to ``REDIS_STARTUP_WAIT_S``, then check the
    password key; ``StartupError`` if Redis stays unreachable."""
    deadline = time.monotonic() + REDIS_STARTUP_WAIT_S
    delay = 0.1
    while True:
        try:
            await check_key(redis, box)
            return
        except (RedisError, OSError) as err:
            if time.monotonic() + delay > deadline:
                raise StartupError(
                    f"cannot reach Redis ({type(err).__name__}: {err}) after "
                    f"{REDIS_STARTUP_WAIT_S:.0f}s; check KITCHENCAM_REDIS_URL"
                ) from None
            log.warning("waiting for Redis (%s); retrying in %.1fs", type(err).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def ice_settings(settings: Settings) -> IceSettings:
    """ICE servers from settings (TURN credentials on the TURN entries)."""
    from aiortc import RTCIceServer

    servers = []
    for url in settings.ice_servers:
        if url.startswith("turn"):
            password = settings.turn_password.get_secret_value() if settings.turn_password else None
            servers.append(
                RTCIceServer(urls=url, username=settings.turn_username, credential=password)
            )
        else:
            servers.append(RTCIceServer(urls=url))
    return IceSettings(tuple(servers))


def create_app(
    settings: Settings,
    redis_url: str,
    roles: tuple[str, ...] = ("web", "relay", "checker"),
    resolver: Resolver | None = None,
    observer_factory: ObserverFactory | None = None,
) -> web.Application:
    """Build the app for ``roles``; nothing connects until the app starts."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[errors_middleware])
    box = secret_box(settings)
    redis = connect_redis(redis_url)
    policy = AddressPolicy(tuple(settings.allow_networks), resolver or SystemResolver())
    app[appkeys.SETTINGS] = settings
    app[appkeys.REDIS] = redis
    app[appkeys.REGISTRY] = Registry(redis, box, policy)
    app[appkeys.USERS] = Users(redis)
    app[appkeys.METRICS] = Metrics()
    app[appkeys.ROLES] = RoleSet(roles, settings.instance or instance_name())
    compliance = checker_service.build(
        settings,
        redis,
        app[appkeys.REGISTRY],
        box,
        resolver or SystemResolver(),
        app[appkeys.ROLES].instance,
    )
    app[appkeys.COMPLIANCE] = compliance
    app.router.add_routes(ops.routes)
    if "web" in roles:
        app.router.add_routes(api.routes)
        app.router.add_routes(compliance_api.routes)
        pages.setup(app)
    if "relay" in roles:
        configure_host_addresses([str(a) for a in settings.webrtc_addresses])
        ice = ice_settings(settings)
        viewers = ViewerHub(ice, settings.max_viewers_per_camera, settings.max_viewers)
        hub = RelayHub(
            app[appkeys.REGISTRY],
            redis,
            policy,
            viewers,
            ice,
            observer_factory or compliance.make_observer,
        )
        app[appkeys.RELAY] = hub
        app[appkeys.METRICS].registry.register(RelayCollector(hub))
        app.router.add_routes(whep.routes)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            await wait_for_redis(redis, box)
        except BaseException:
            await redis.aclose()
            raise
        yield
        await redis.aclose()

    async def roles_ctx(app: web.Application) -> AsyncIterator[None]:
        role_set = app[appkeys.ROLES]
        if "web" in roles:
            role_set.set("web", True, "serving")
        bodies: list[tuple[str, Coroutine[None, None, None]]] = [
            ("heartbeat", heartbeat(redis, role_set))
        ]
        if "relay" in roles:
            role_set.set("relay", True, "starting")
            bodies.append(("relay", app[appkeys.RELAY].run(role_set)))
            bodies.append(("relay-compliance", compliance.observers.run()))
        if "checker" in roles:
            bodies.append(("checker", checker_service.run(compliance, role_set)))
        async with contextlib.AsyncExitStack() as stack:
            for name, body in bodies:
                await stack.enter_async_context(running_task(name, body))
            yield
        for name in roles:
            role_set.set(name, False, "stopped")

    app.cleanup_ctx.extend([redis_ctx, roles_ctx])
    return app
