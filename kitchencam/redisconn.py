"""Reaching Redis: clients for every supported URL form, and riding out outages.

Supported URLs:

* ``redis://[[user]:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path?db=N``:
  one server.
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``: Redis Sentinel.
  The sentinels are asked for the current master of ``service`` and again after every
  connection error, so a failover is followed without a restart. The password is the data
  nodes'; sentinels that need their own take ``?sentinel_password=...``. ``rediss+sentinel://``
  speaks TLS to the data nodes.

``redis+cluster://`` is refused with :class:`RedisUrlError`: KitchenCam's transactions and
scripts touch keys that Redis Cluster would put in different slots (see ``CLUSTER_REFUSAL``).

While Redis is unreachable, each long-running loop keeps one :class:`RedisOutage`: it logs the
outage once when it starts and once when Redis answers again, and spaces the retries with a
capped exponential back-off.
"""

from __future__ import annotations

import logging
import random
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import ReadOnlyError
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S: Final = 5.0
"""Longest wait for one Redis answer: a Redis that hangs (not refusing) fails a command then."""
CONNECT_TIMEOUT_S: Final = 5.0
HEALTH_CHECK_INTERVAL_S: Final = 30
"""Idle pooled connections are PINGed before reuse after this long, so a restarted Redis is
noticed on the next command instead of as a broken pipe."""
COMMAND_RETRIES: Final = 3
COMMAND_RETRY_BASE_S: Final = 0.05
COMMAND_RETRY_CAP_S: Final = 0.5
"""redis-py's default retries a failing command ten times for several seconds; a web request
during an outage should answer 503 within about a second instead, and the loops retry on
their own schedule (``OUTAGE_*``)."""
OUTAGE_FIRST_DELAY_S: Final = 0.5
OUTAGE_MAX_DELAY_S: Final = 5.0
"""Back-off of the loops while Redis is down: 0.5, 1, 2, 4, 5, 5... seconds (±20 % jitter)."""
OUTAGE_JITTER: Final = 0.2
SENTINEL_DEFAULT_PORT: Final = 26379
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
PLAIN_SCHEMES: Final = ("redis", "rediss", "unix")

CLUSTER_REFUSAL: Final = (
    "Redis Cluster is not supported: registrations, users, compliance events and webhook "
    "deliveries are written with MULTI/EXEC (and WATCH) across keys that Redis Cluster puts "
    "in different hash slots (e.g. kc:restaurant:{rid} with kc:restaurants and kc:licence:...), "
    "and the relays' lease scripts (Lua) read kc:lease:{cid} with kc:fence:{cid} and the keys "
    "they fence; a cluster refuses both with CROSSSLOT. Use one Redis server, or Redis Sentinel "
    "(redis+sentinel://host:26379[,host:port]/service) for failover"
)

UNAVAILABLE_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
"""Errors that mean "Redis is not reachable (or not writable) right now", not "a bug":
connection refused or lost (redis-py wraps socket errors in these), timeouts, a server still
loading its data, no master known to the sentinels, a replica answering during a failover."""


class RedisUrlError(ValueError):
    """A Redis URL KitchenCam cannot use; the message says what form is expected."""


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL (holds passwords: never log it)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None = field(repr=False)
    sentinel_password: str | None = field(repr=False)
    tls: bool


def check_url(url: str) -> None:
    """Raise ``RedisUrlError`` unless ``url`` is a Redis URL we can connect to (no I/O)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        raise RedisUrlError(CLUSTER_REFUSAL)
    if scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(url)
        return
    if scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(
            f"a Redis URL starts with redis://, rediss://, unix:// or redis+sentinel://, "
            f"not {scheme or '(nothing)'}://"
        )


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split a ``redis+sentinel://`` URL into sentinels, service name, db and passwords."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"not a redis+sentinel:// URL: {scheme}://")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = tuple(_host_port(h) for h in hosts.split(",") if h.strip())
    if not sentinels:
        raise RedisUrlError(
            "a redis+sentinel:// URL names at least one sentinel: "
            "redis+sentinel://[:password@]host:port[,host:port]/service_name[/db]"
        )
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise RedisUrlError(
            "a redis+sentinel:// URL ends with the monitored service's name and an optional "
            "db number: redis+sentinel://host:26379/mymaster/0"
        )
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise RedisUrlError(f"the db in a redis+sentinel:// URL is a number, not {path[1]!r}")
        db = int(path[1])
    query = urllib.parse.parse_qs(parts.query)
    unknown = sorted(set(query) - {"sentinel_password"})
    if unknown:
        raise RedisUrlError(
            f"unknown redis+sentinel:// URL option {', '.join(unknown)} (known: sentinel_password)"
        )
    sentinel_password = query.get("sentinel_password", [None])[-1]
    return SentinelUrl(
        sentinels=sentinels,
        service=urllib.parse.unquote(path[0]),
        db=db,
        username=urllib.parse.unquote(username) or None,
        password=urllib.parse.unquote(password) or None,
        sentinel_password=sentinel_password,
        tls=scheme.startswith("rediss"),
    )


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), SENTINEL_DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"a sentinel's port is a number from 1 to 65535, not {port!r}")
    return host.strip("[]"), int(port)


def _client_options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=COMMAND_RETRY_BASE_S, cap=COMMAND_RETRY_CAP_S),
            COMMAND_RETRIES,
        ),
    }


class SentinelRedis(aioredis.Redis):
    """A client of a Sentinel-monitored master that also closes its sentinel connections."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client, its pool, and the connections to the sentinels."""
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def connect_redis(url: str) -> aioredis.Redis:
    """A Redis client for ``url`` (any supported form), answers decoded as text; no I/O."""
    check_url(url)
    if urllib.parse.urlsplit(url).scheme.lower() in SENTINEL_SCHEMES:
        return _connect_sentinel(parse_sentinel_url(url))
    return aioredis.Redis.from_url(url, **_client_options())


def _connect_sentinel(parsed: SentinelUrl) -> aioredis.Redis:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "decode_responses": True,
    }
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs
    )
    options = _client_options()
    options.update(db=parsed.db, username=parsed.username, password=parsed.password)
    if parsed.tls:
        options["ssl"] = True
    client: SentinelRedis = sentinel.master_for(
        parsed.service, redis_class=SentinelRedis, **options
    )
    client.sentinel_manager = sentinel
    return client


class RedisOutage:
    """One loop's view of a Redis outage: logs its start and end once, paces the retries.

    Call :meth:`failed` after each failed attempt (it returns how long to wait) and
    :meth:`recovered` after each successful one.
    """

    def __init__(self, what: str, logger: logging.Logger | None = None) -> None:
        self.what = what
        self._log = logger or log
        self._since: float | None = None
        self._delay = OUTAGE_FIRST_DELAY_S
        self.outages = 0

    @property
    def down(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def failed(self, err: BaseException) -> float:
        """Note a failed attempt; return the seconds to wait before the next one."""
        if self._since is None:
            self._since = time.monotonic()
            self.outages += 1
            self._delay = OUTAGE_FIRST_DELAY_S
            self._log.warning(
                "%s: Redis unreachable (%s: %s); retrying with back-off up to %.0fs",
                self.what,
                type(err).__name__,
                _first_line(err),
                OUTAGE_MAX_DELAY_S,
            )
        else:
            self._log.debug("%s: Redis still unreachable (%s)", self.what, type(err).__name__)
        delay = self._delay
        self._delay = min(self._delay * 2, OUTAGE_MAX_DELAY_S)
        return delay * random.uniform(1 - OUTAGE_JITTER, 1 + OUTAGE_JITTER)

    def recovered(self) -> None:
        """Note a successful attempt; log the end of an outage."""
        if self._since is not None:
            self._log.info(
                "%s: Redis reachable again after %.1fs", self.what, time.monotonic() - self._since
            )
            self._since = None
            self._delay = OUTAGE_FIRST_DELAY_S


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()
    return text[0][:200] if text else ""
