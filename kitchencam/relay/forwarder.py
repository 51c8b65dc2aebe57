"""The HTTP client a web process uses to hand a viewer's WHEP signalling to a relay process.

One shared ``aiohttp.ClientSession`` per process (opened by the app's ``cleanup_ctx``), short
timeouts, no cookies kept between viewers, no redirects followed. The answer of the relay is
passed back with its status, body and the WHEP headers; a relay that does not answer becomes
``RelayUnreachable``. Runs on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter
from yarl import URL

from kitchencam.ratelimit import RateLimiter
from kitchencam.relay.webrtc import IceSettings

CONNECT_TIMEOUT_S = 2.0
# Answering an offer gathers ICE candidates on the relay (STUN/TURN servers included).
FORWARD_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 256 * 1024
# Marks a request a web process forwarded (value: ``forwarding_token``): its receiver answers
# it itself and never forwards it again, and does not rate-limit it a second time.
FORWARDED_HEADER = "X-KitchenCam-Forwarded"
REQUEST_HEADERS = ("Content-Type", "If-Match", "Authorization")
ANSWER_HEADERS = ("Location", "ETag", "Link", "Accept-Patch", "Retry-After", "Content-Type")


class RelayUnreachable(Exception):
    """The relay holding a camera did not answer; the message says why (no credentials)."""


@dataclass(frozen=True)
class RelayAnswer:
    """What a relay answered: status, body and the headers a viewer needs."""

    status: int
    body: bytes
    headers: CIMultiDict[str]


def forwarding_token(key_check: str) -> str:
    """The ``X-KitchenCam-Forwarded`` value every process sharing the password key agrees on.

    Derived from the key's fingerprint (``SecretBox.fingerprint``), so a viewer cannot forge
    it to skip the web process's rate limit.
    """
    return hmac.new(key_check.encode(), b"kitchencam whep forwarding", hashlib.sha256).hexdigest()


def local_location(location: str) -> str:
    """A relay's ``Location`` as a path on the web process's own origin."""
    url = URL(location)
    return url.path_qs if url.is_absolute() else location


def forwarded_for(existing: str | None, client: str | None) -> str:
    """The ``X-Forwarded-For`` value after appending ``client`` to ``existing``."""
    parts = [p for p in (existing, client) if p]
    return ", ".join(parts) if parts else "unknown"


def answer_headers(received: Mapping[str, str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The WHEP headers of a relay's answer (``Location`` rewritten to a local path)."""
    kept: CIMultiDict[str] = CIMultiDict()
    source = received if isinstance(received, CIMultiDict) else CIMultiDict(received)
    for name in ANSWER_HEADERS:
        for value in source.getall(name, []):
            kept.add(name, local_location(value) if name == "Location" else value)
    return kept


class ForwardMetrics:
    """Counters of forwarded signalling and refused viewers, in the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.forwarded = Counter(
            "kitchencam_whep_forwarded",
            "WHEP requests this web process forwarded to a relay, by method and outcome "
            "(answered, unreachable).",
            ["method", "outcome"],
            registry=registry,
        )
        self.refused = Counter(
            "kitchencam_whep_refused",
            "WHEP requests refused before any relay saw them, by reason (rate_limited, no_holder).",
            ["reason"],
            registry=registry,
        )


UNREACHABLE_WARN_INTERVAL_S = 30.0
MAX_WARNED_RELAYS = 1000


class Forwarder:
    """Sends signalling requests to relays over one shared HTTP client session."""

    def __init__(
        self, metrics: ForwardMetrics, limiter: RateLimiter, ice: IceSettings, key_check: str
    ) -> None:
        self.metrics = metrics
        self.limiter = limiter
        self.ice = ice
        self._token = forwarding_token(key_check)
        self._session: aiohttp.ClientSession | None = None
        self._warned: dict[str, float] = {}

    def should_warn(self, relay_id: str, now: float) -> bool:
        """Whether a relay that does not answer is worth a warning now (once per interval)."""
        if now - self._warned.get(relay_id, -UNREACHABLE_WARN_INTERVAL_S) < (
            UNREACHABLE_WARN_INTERVAL_S
        ):
            return False
        if len(self._warned) >= MAX_WARNED_RELAYS:
            self._warned.clear()
        self._warned[relay_id] = now
        return True

    def is_forwarded(self, headers: Mapping[str, str]) -> bool:
        """Whether a request was forwarded by one of our web processes (its token matches)."""
        return hmac.compare_digest(headers.get(FORWARDED_HEADER, ""), self._token)

    async def cleanup_ctx(self, _app: object) -> AsyncIterator[None]:
        """The app's ``cleanup_ctx``: open the shared client session, close it at shutdown."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        try:
            yield
        finally:
            session, self._session = self._session, None
            await session.close()

    async def send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        client: str | None,
    ) -> RelayAnswer:
        """Forward one request to ``url``; the relay's answer, or ``RelayUnreachable``."""
        if self._session is None:
            raise RelayUnreachable("this process is not running")
        out = {name: headers[name] for name in REQUEST_HEADERS if name in headers}
        out["X-Forwarded-For"] = forwarded_for(headers.get("X-Forwarded-For"), client)
        out[FORWARDED_HEADER] = self._token
        try:
            async with self._session.request(
                method, url, data=body, headers=out, allow_redirects=False
            ) as resp:
                payload = await resp.content.read(MAX_ANSWER_BYTES)
                answer = RelayAnswer(resp.status, payload, answer_headers(resp.headers))
        except (aiohttp.ClientError, TimeoutError) as err:
            self.metrics.forwarded.labels(method, "unreachable").inc()
            raise RelayUnreachable(type(err).__name__) from None
        self.metrics.forwarded.labels(method, "answered").inc()
        return answer
