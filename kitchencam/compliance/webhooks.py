"""Webhooks: a restaurant's URL, told of each of its cameras' state changes, signed.

A restaurant sets one ``https://`` (or ``http://``) URL; it is checked with the camera address
policy (``KITCHENCAM_WEBHOOK_ALLOW_NETWORKS`` opens networks, as ``KITCHENCAM_ALLOW_NETWORKS``
does for cameras) when set and again before every delivery, and the POST goes to the IP
address that passed the check, never to the name again (TLS still verifies the name).

Each event is POSTed as JSON with the header::

    X-KitchenCam-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

The secret (``whsec_...``) is shown once, when the URL is set; it is stored encrypted.
Failed deliveries (no answer, or not 2xx) are retried with back-off for
``KITCHENCAM_WEBHOOK_RETRY_S``; every attempt is logged, and kept in the restaurant's
delivery log. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kitchencam import keys
from kitchencam.addresses import (
    AddressError,
    IPAddress,
    Network,
    Resolver,
    StreamAddress,
    parse_web_url,
    refusal,
)
from kitchencam.compliance.records import Event
from kitchencam.redisconn import RedisOutage
from kitchencam.secretbox import SecretBox

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-KitchenCam-Signature"
EVENT_HEADER: Final = "X-KitchenCam-Event"
ATTEMPT_HEADER: Final = "X-KitchenCam-Attempt"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
BACKOFF_S: Final = (5.0, 15.0, 60.0, 300.0, 900.0)
"""Waits after the 1st, 2nd... failed attempt; the last repeats until the retry time is up."""
LOCK_S: Final = 120
"""A delivery being attempted is locked this long (a checker dying mid-attempt frees it)."""
POLL_S: Final = 1.0
BATCH: Final = 20


def new_secret() -> str:
    """A fresh webhook signing secret."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-KitchenCam-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` (for receivers
    and tests)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, t, body), header)


@dataclass(frozen=True, slots=True)
class Webhook:
    """A restaurant's webhook."""

    url: str
    secret_enc: str
    created_at: float

    def public(self) -> dict[str, Any]:
        """What the API shows (never the secret)."""
        return {"url": self.url, "created_at": self.created_at}


async def check_address(
    address: StreamAddress, allow: Sequence[Network], resolver: Resolver
) -> IPAddress:
    """Resolve and check a webhook address with the camera policy; the IP to connect to."""
    try:
        import ipaddress

        ips: list[IPAddress] = [ipaddress.ip_address(address.host)]
    except ValueError:
        try:
            async with asyncio.timeout(5.0):
                ips = await resolver.resolve(address.host, address.port)
        except (OSError, TimeoutError) as err:
            raise AddressError(f"host {address.host!r} could not be resolved") from err
    if not ips:
        raise AddressError(f"host {address.host!r} has no addresses")
    for ip in ips:
        why = refusal(ip, allow)
        if why is not None:
            raise AddressError(
                f"host {address.host!r} is {why} ({ip}); webhooks must go to a public "
                "address, or the operator must allow the network with "
                "KITCHENCAM_WEBHOOK_ALLOW_NETWORKS"
            )
    return ips[0]


class Webhooks:
    """Webhook settings in Redis (``kc:restaurant:{rid}:webhook``) and the delivery log."""

    def __init__(
        self, redis: Redis, box: SecretBox, allow: Sequence[Network], resolver: Resolver
    ) -> None:
        self.redis = redis
        self._box = box
        self.allow = tuple(allow)
        self.resolver = resolver

    async def set(self, rid: str, url: str) -> tuple[Webhook, str]:
        """Check and store the URL with a new secret; return it and the secret (shown once)."""
        address = parse_web_url(url)
        await check_address(address, self.allow, self.resolver)
        secret = new_secret()
        hook = Webhook(address.url, self._box.encrypt(secret), round(time.time(), 3))
        await self.redis.set(
            keys.webhook(rid),
            json.dumps({"url": hook.url, "secret": hook.secret_enc, "created_at": hook.created_at}),
        )
        return hook, secret

    async def get(self, rid: str) -> Webhook | None:
        """The restaurant's webhook, if set."""
        raw = await self.redis.get(keys.webhook(rid))
        if raw is None:
            return None
        data = json.loads(raw)
        return Webhook(data["url"], data["secret"], float(data["created_at"]))

    async def remove(self, rid: str) -> bool:
        """Remove the webhook; whether there was one."""
        return bool(await self.redis.delete(keys.webhook(rid)))

    def secret(self, hook: Webhook) -> str:
        """The signing secret in clear (for delivery only)."""
        return self._box.decrypt(hook.secret_enc)

    async def log(self, rid: str, limit: int = keys.WEBHOOK_LOG_LENGTH) -> list[dict[str, Any]]:
        """The latest delivery attempts, newest first."""
        raws = await self.redis.lrange(keys.webhook_log(rid), 0, limit - 1)
        return [json.loads(r) for r in raws]


class _PinnedResolver(AbstractResolver):
    """Answers every look-up with the one address that passed the policy."""

    def __init__(self, ip: IPAddress) -> None:
        self._ip = ip

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        family = socket.AF_INET6 if self._ip.version == 6 else socket.AF_INET
        return [
            ResolveResult(
                hostname=host, host=str(self._ip), port=port, family=family, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


class Deliverer:
    """Sends queued webhook deliveries (``kc:webhook:queue``) with retries; the checker runs it.

    Several checkers may run one each: a delivery is locked while attempted.
    """

    def __init__(
        self,
        hooks: Webhooks,
        instance: str,
        *,
        retry_s: float = 3600.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hooks = hooks
        self.redis = hooks.redis
        self.instance = instance
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.attempts = 0

    async def run(self) -> None:
        """Deliver due webhooks until cancelled."""
        outage = RedisOutage(f"webhooks of {self.instance}", log)
        while True:
            try:
                await self.deliver_due()
                outage.recovered()
            except (RedisError, OSError) as err:
                await asyncio.sleep(outage.failed(err))
                continue
            await asyncio.sleep(POLL_S)

    async def deliver_due(self) -> int:
        """Attempt every delivery that is due now; return how many were attempted."""
        due: Any = await self.redis.zrangebyscore(
            keys.WEBHOOK_QUEUE, "-inf", self.clock(), 0, BATCH
        )
        count = 0
        for eid in due:
            eid = str(eid)
            lock = f"{keys.webhook_delivery(eid)}:lock"
            if not await self.redis.set(lock, self.instance, nx=True, ex=LOCK_S):
                continue
            try:
                await self._attempt(eid)
                count += 1
            finally:
                await self.redis.delete(lock)
        return count

    async def _attempt(self, eid: str) -> None:
        raw = await self.redis.get(keys.webhook_delivery(eid))
        raw_event = await self.redis.get(keys.event(eid))
        if raw is None or raw_event is None:
            await self.redis.zrem(keys.WEBHOOK_QUEUE, eid)
            return
        delivery = json.loads(raw)
        event = Event.model_validate_json(raw_event)
        rid = delivery["restaurant"]
        hook = await self.hooks.get(rid)
        if hook is None:
            await self._done(eid, rid, delivery, "webhook removed; not sent", None, True)
            return
        attempt = int(delivery["attempts"]) + 1
        delivery["attempts"] = attempt
        body = json.dumps(
            {"type": "camera.state_changed", "event": event.public()}, separators=(",", ":")
        ).encode()
        status, error = await self._post(hook, body, eid, attempt)
        self.attempts += 1
        ok = status is not None and 200 <= status < 300
        outcome = f"HTTP {status}" if status is not None else f"failed: {error}"
        give_up = not ok and self.clock() - float(delivery["first"]) >= self.retry_s
        await self._done(eid, rid, delivery, outcome, status, ok or give_up, hook.url)

    async def _post(
        self, hook: Webhook, body: bytes, eid: str, attempt: int
    ) -> tuple[int | None, str]:
        try:
            address = parse_web_url(hook.url)
            ip = await check_address(address, self.hooks.allow, self.hooks.resolver)
        except AddressError as err:
            return None, str(err)
        now = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.hooks.secret(hook), now, body),
            EVENT_HEADER: eid,
            ATTEMPT_HEADER: str(attempt),
            "User-Agent": "KitchenCam-Webhook/1",
        }
        connector = aiohttp.TCPConnector(resolver=_PinnedResolver(ip), force_close=True)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.post(hook.url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                await resp.read()
                return resp.status, ""
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            return None, type(err).__name__

    async def _done(
        self,
        eid: str,
        rid: str,
        delivery: dict[str, Any],
        outcome: str,
        status: int | None,
        finished: bool,
        url: str = "",
    ) -> None:
        attempt = int(delivery["attempts"])
        entry = {
            "event": eid,
            "attempt": attempt,
            "at": round(self.clock(), 3),
            "url": url,
            "status": status,
            "outcome": outcome,
            "final": finished,
        }
        if finished:
            log.info("webhook of restaurant %s, event %s: %s (final)", rid, eid, outcome)
        else:
            log.warning("webhook of restaurant %s, event %s: %s; will retry", rid, eid, outcome)
        wait = BACKOFF_S[min(max(attempt - 1, 0), len(BACKOFF_S) - 1)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(keys.webhook_log(rid), json.dumps(entry))
            pipe.ltrim(keys.webhook_log(rid), 0, keys.WEBHOOK_LOG_LENGTH - 1)
            if finished:
                pipe.zrem(keys.WEBHOOK_QUEUE, eid)
                pipe.delete(keys.webhook_delivery(eid))
            else:
                pipe.set(keys.webhook_delivery(eid), json.dumps(delivery), ex=8 * 86400)
                pipe.zadd(keys.WEBHOOK_QUEUE, {eid: self.clock() + wait})
            await pipe.execute()
