"""The application factory: one aiohttp app per process, holding the roles it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine

import redis.asyncio as aioredis
from aiohttp import web

from kitchencam import (
    api,
    appkeys,
    board,
    keys,
    ops,
    pages,
    portal,
    probeviews,
    redisconn,
    signin,
    signup,
    watch,
)
from kitchencam.accounts import Accounts
from kitchencam.addresses import AddressPolicy, Resolver, SystemResolver
from kitchencam.compliance import api as compliance_api
from kitchencam.compliance import service as checker_service
from kitchencam.csrf import csrf_middleware
from kitchencam.httperrors import errors_middleware
from kitchencam.metrics import Metrics
from kitchencam.ratelimit import RateLimiter
from kitchencam.registry import Registry
from kitchencam.relay import forward, whep
from kitchencam.relay.claims import LeasePolicy
from kitchencam.relay.demo import DemoAddressPolicy
from kitchencam.relay.figures import RelayCollector
from kitchencam.relay.forwarder import Forwarder, ForwardMetrics
from kitchencam.relay.hub import ObserverFactory, RelayHub
from kitchencam.relay.probe import Prober
from kitchencam.relay.webrtc import IceSettings, ViewerHub, configure_host_addresses
from kitchencam.roles import RoleSet, heartbeat, instance_name, running_task
from kitchencam.secretbox import SecretBox, load_or_create_key
from kitchencam.settings import Settings
from kitchencam.users import Users
from kitchencam.workers import WorkerPool

log = logging.getLogger(__name__)


REDIS_STARTUP_WAIT_S = 30.0


class StartupError(Exception):
    """The process cannot start; the message says what to do."""


def connect_redis(url: str) -> aioredis.Redis:
    """A Redis client for ``url`` (redis://, rediss://, unix://, redis+sentinel://), answers
    decoded as text; see ``kitchencam.redisconn``."""
    return redisconn.connect_redis(url)


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
    outage = redisconn.RedisOutage("start-up", log)
    while True:
        try:
            await check_key(redis, box)
            outage.recovered()
            return
        except (*redisconn.UNAVAILABLE_ERRORS, OSError) as err:
            delay = outage.failed(err)
            if time.monotonic() + delay > deadline:
                raise StartupError(
                    f"cannot reach Redis ({type(err).__name__}: {err}) after "
                    f"{REDIS_STARTUP_WAIT_S:.0f}s; check KITCHENCAM_REDIS_URL"
                ) from None
            await asyncio.sleep(delay)


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
    workers: WorkerPool | None = None,
) -> web.Application:
    """Build the app for ``roles``; nothing connects until the app starts. With ``workers``
    the relay role is theirs: this process supervises them (``kitchencam serve``)."""
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[errors_middleware, csrf_middleware]
    )
    box = secret_box(settings)
    redis = connect_redis(redis_url)
    policy_type = DemoAddressPolicy if settings.demo else AddressPolicy
    policy = policy_type(tuple(settings.allow_networks), resolver or SystemResolver())
    app[appkeys.SETTINGS] = settings
    app[appkeys.REDIS] = redis
    app[appkeys.REGISTRY] = Registry(redis, box, policy)
    app[appkeys.USERS] = Users(redis)
    app[appkeys.ACCOUNTS] = Accounts(redis)
    app[appkeys.PROBER] = Prober(policy)
    app[appkeys.METRICS] = Metrics()
    role_names = roles if workers is None else (*roles, "relay")
    app[appkeys.ROLES] = RoleSet(role_names, settings.instance or instance_name())
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
        for page_routes in (signin.routes, signup.routes, portal.routes, probeviews.routes):
            app.router.add_routes(page_routes)
        watch.setup(app)
        board.setup(app)
        forwarder = Forwarder(
            ForwardMetrics(app[appkeys.METRICS].registry),
            RateLimiter(settings.whep_rate_per_min),
            ice_settings(settings),
            box.fingerprint,
        )
        app[appkeys.FORWARDER] = forwarder
        app.router.add_routes(forward.routes)
        app.cleanup_ctx.append(forwarder.cleanup_ctx)
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
            leases=LeasePolicy(
                app[appkeys.ROLES].instance,
                settings.advertised_relay_url,
                settings.relay_capacity,
                settings.lease_ttl_s,
            ),
        )
        compliance.observers.use_leases(hub.claims)
        app[appkeys.RELAY] = hub
        app[appkeys.METRICS].registry.register(RelayCollector(hub))
        if "web" not in roles:
            app.router.add_routes(whep.routes)
    if workers is not None:
        app[appkeys.WORKERS] = workers

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
        if workers is not None:
            bodies.append(("relay-workers", workers.run(role_set)))
        async with contextlib.AsyncExitStack() as stack:
            for name, body in bodies:
                await stack.enter_async_context(running_task(name, body))
            yield
        for name in role_names:
            role_set.set(name, False, "stopped")

    app.cleanup_ctx.extend([redis_ctx, roles_ctx])
    return app
