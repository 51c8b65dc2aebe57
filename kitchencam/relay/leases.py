"""Camera leases in Redis: which relay pulls which camera, with a fencing token.

``kc:lease:{cid}`` holds ``"{relay_id} {fence}"`` and expires unless its relay renews it;
``kc:fence:{cid}`` counts claims, so every new holder gets a larger token. Relays advertise
where they answer signalling in ``kc:relay:{relay_id}`` (JSON with ``url``, ``capacity``,
``held``) and list themselves in ``kc:relays``, scored by when that advertisement runs out.

Every change of a lease is one Lua script (atomic on the server): claim (``SET`` only if no
lease exists, with the next fence from ``INCR``), renew (``PEXPIRE`` only if the value is still
ours), release (``DEL`` only if still ours). Every write a relay makes about a camera goes
through :class:`FencedBatch`: one script that checks ``GET kc:lease:{cid}`` against the
writer's exact lease value and applies its commands only if it matches, so a relay whose lease
moved (it was partitioned, paused, or its lease overwritten) can no longer write about the
camera, and learns so from the refusal. Scripts use only Redis 6.2 commands. Runs on the event
loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from redis.asyncio import Redis

from kitchencam import keys

MGET_CHUNK: Final = 1000
"""Lease keys read per ``MGET`` when looking for free cameras."""

_CLAIM: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. fence, 'PX', ARGV[2])
return fence
"""
"""KEYS: lease, fence; ARGV: relay id, TTL (ms). The new fence, or nil if already leased."""

_RENEW: Final = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current then return current end
return 0
"""
"""KEYS: lease; ARGV: our value, TTL (ms). 1 renewed, 0 vanished, else the other holder."""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""KEYS: lease; ARGV: our value. 1 released, 0 not ours (any more)."""

_FENCED: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local out = {1}
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  local reply = redis.call(ARGV[i], KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
  if type(reply) == 'table' and reply.ok then reply = reply.ok end
  out[#out + 1] = reply
  i = i + 3 + n
end
return out
"""
"""KEYS: lease, then every key written; ARGV: the expected lease value, then each command as
name, key index, argument count, arguments. 0 when refused, else 1 and each command's reply."""


class LeaseLost(Exception):
    """A write about a camera was refused: this relay no longer holds the camera's lease."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(f"camera {camera_id}: lease lost")
        self.camera_id = camera_id


@dataclass(frozen=True, slots=True)
class Holder:
    """The relay holding a camera's lease, and where it answers signalling."""

    relay_id: str
    fence: int
    url: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this relay holds: the camera, the relay, and the fencing token it got."""

    camera_id: str
    relay_id: str
    fence: int

    @property
    def value(self) -> str:
        """The stored form (``kc:lease:{cid}``'s value)."""
        return lease_value(self.relay_id, self.fence)


def parse_lease(value: str | None) -> tuple[str, int] | None:
    """``(relay_id, fence)`` from a lease value, or None for a missing or malformed one."""
    if not value:
        return None
    relay_id, _, fence = value.rpartition(" ")
    if not relay_id or not fence.isdigit():
        return None
    return relay_id, int(fence)


def lease_value(relay_id: str, fence: int) -> str:
    """The stored form of a lease."""
    return f"{relay_id} {fence}"


async def holder(redis: Redis, camera_id: str) -> Holder | None:
    """The relay that holds ``camera_id`` now, or None when no relay holds it."""
    raw = await redis.get(keys.lease(camera_id))
    lease = parse_lease(str(raw) if raw is not None else None)
    if lease is None:
        return None
    relay_id, fence = lease
    advert = await redis.get(keys.relay(relay_id))
    url = json.loads(str(advert)).get("url") if advert else None
    return Holder(relay_id, fence, url)


@dataclass(frozen=True, slots=True)
class Renewal:
    """What renewing one lease found: renewed, vanished (no lease at all), or another holder."""

    lease: Lease
    renewed: bool
    other: str | None = None
    """The other relay's lease value, when the lease names another relay now."""


@dataclass(frozen=True, slots=True)
class Advert:
    """What a live relay advertises that placing cameras needs: its capacity, and when its
    advertisement runs out (unix s; a relay that stops renewing it is gone by then)."""

    capacity: int
    until: float


class FencedBatch:
    """Writes about one camera, applied atomically only while ``lease`` is still current.

    Offers the pipeline methods the writers use (``set``, ``hset``, ``expire``, ``zadd``,
    ``xadd``), so the same staging code fills a plain pipeline or a fenced batch.
    ``execute()`` raises :class:`LeaseLost` when the lease moved.
    """

    def __init__(self, leases: LeaseStore, lease: Lease) -> None:
        self.lease = lease
        self._leases = leases
        self._keys: list[str] = [keys.lease(lease.camera_id)]
        self._args: list[str] = [lease.value]
        self._count = 0

    def _add(self, name: str, key: str, args: Sequence[object]) -> Self:
        if key not in self._keys:
            self._keys.append(key)
        index = self._keys.index(key) + 1
        self._args += [name, str(index), str(len(args)), *(_arg(a) for a in args)]
        self._count += 1
        return self

    def set(self, key: str, value: str, ex: int | None = None) -> Self:
        """``SET key value [EX ex]``."""
        return self._add("SET", key, [value] if ex is None else [value, "EX", ex])

    def hset(self, key: str, mapping: Mapping[str, object]) -> Self:
        """``HSET key field value ...``."""
        return self._add("HSET", key, [x for pair in mapping.items() for x in pair])

    def expire(self, key: str, seconds: int) -> Self:
        """``EXPIRE key seconds``."""
        return self._add("EXPIRE", key, [seconds])

    def zadd(self, key: str, mapping: Mapping[str, float]) -> Self:
        """``ZADD key score member ...``."""
        return self._add("ZADD", key, [x for m, s in mapping.items() for x in (s, m)])

    def xadd(
        self,
        key: str,
        fields: Mapping[str, object],
        maxlen: int | None = None,
        approximate: bool = True,
    ) -> Self:
        """``XADD key [MAXLEN [~] n] * field value ...``."""
        trim: list[object] = []
        if maxlen is not None:
            trim = ["MAXLEN", "~" if approximate else "=", maxlen]
        return self._add("XADD", key, [*trim, "*", *(x for pair in fields.items() for x in pair)])

    def __len__(self) -> int:
        """How many commands are staged."""
        return self._count

    async def execute(self) -> list[Any]:
        """Apply the staged commands if the lease is current; their replies, in order."""
        reply = await self._leases.fenced_script(keys=self._keys, args=self._args)
        return self.check(reply)

    def check(self, reply: Any) -> list[Any]:
        """The replies from a script reply; ``LeaseLost`` when the write was refused."""
        if not isinstance(reply, list) or not reply or reply[0] != 1:
            raise LeaseLost(self.lease.camera_id)
        return list(reply[1:])

    async def stage_into(self, pipe: Any) -> None:
        """Queue this batch on a non-transactional pipeline (one round trip for many)."""
        await self._leases.fenced_script(keys=self._keys, args=self._args, client=pipe)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def _arg(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float):
        return repr(value)
    return str(value)


class LeaseStore:
    """The lease scripts and relay advertisements in one Redis (cheap to build: no I/O)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self.fenced_script = redis.register_script(_FENCED)

    async def claim(self, camera_id: str, relay_id: str, ttl_s: float) -> Lease | None:
        """Take the camera's lease if nobody holds it; the lease with its new fence, or None."""
        fence = await self._claim(
            keys=[keys.lease(camera_id), keys.fence(camera_id)], args=[relay_id, _ms(ttl_s)]
        )
        return Lease(camera_id, relay_id, int(fence)) if fence is not None else None

    async def renew(self, leases: Sequence[Lease], ttl_s: float) -> list[Renewal]:
        """Renew many leases in one round trip; what each renewal found."""
        if not leases:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for lease in leases:
                await self._renew(
                    keys=[keys.lease(lease.camera_id)],
                    args=[lease.value, _ms(ttl_s)],
                    client=pipe,
                )
            replies = await pipe.execute()
        out = []
        for lease, reply in zip(leases, replies, strict=True):
            if reply == 1:
                out.append(Renewal(lease, True))
            else:
                out.append(Renewal(lease, False, str(reply) if reply else None))
        return out

    async def release(self, lease: Lease) -> bool:
        """Give the lease up if it is still ours; whether it was."""
        return bool(await self._release(keys=[keys.lease(lease.camera_id)], args=[lease.value]))

    async def release_all(self, leases: Sequence[Lease]) -> None:
        """Give many leases up in one round trip."""
        if not leases:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for lease in leases:
                await self._release(
                    keys=[keys.lease(lease.camera_id)], args=[lease.value], client=pipe
                )
            await pipe.execute()

    def batch(self, lease: Lease) -> FencedBatch:
        """An empty batch of writes fenced by ``lease``."""
        return FencedBatch(self, lease)

    async def run_batches(self, batches: Sequence[FencedBatch]) -> list[FencedBatch]:
        """Run many fenced batches in one round trip; the ones refused (their lease moved)."""
        if not batches:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                await batch.stage_into(pipe)
            replies = await pipe.execute(raise_on_error=False)
        refused = []
        for batch, reply in zip(batches, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            try:
                batch.check(reply)
            except LeaseLost:
                refused.append(batch)
        return refused

    async def free(self, camera_ids: Sequence[str]) -> list[str]:
        """The cameras among ``camera_ids`` that no relay holds now."""
        out: list[str] = []
        for start in range(0, len(camera_ids), MGET_CHUNK):
            chunk = camera_ids[start : start + MGET_CHUNK]
            values = await self.redis.mget([keys.lease(c) for c in chunk])
            out += [cid for cid, value in zip(chunk, values, strict=True) if value is None]
        return out

    async def advertise(
        self, relay_id: str, url: str, capacity: int, held: int, ttl_s: float
    ) -> dict[str, Advert]:
        """Publish this relay's advertisement; return every live relay's, by id."""
        now = time.time()
        until = now + ttl_s
        body = json.dumps({"url": url, "capacity": capacity, "held": held, "until": until})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.relay(relay_id), body, px=_ms(ttl_s))
            pipe.zadd(keys.RELAYS, {relay_id: until})
            pipe.zremrangebyscore(keys.RELAYS, "-inf", now)
            pipe.zrange(keys.RELAYS, 0, -1, withscores=True)
            replies = await pipe.execute()
        scored = [(str(r), float(score)) for r, score in replies[-1]]
        bodies = await self.redis.mget([keys.relay(r) for r, _ in scored]) if scored else []
        out = {}
        for (rid, score), advert in zip(scored, bodies, strict=True):
            try:
                out[rid] = Advert(int(json.loads(advert)["capacity"]) if advert else 0, score)
            except (ValueError, KeyError, TypeError):
                continue
        out[relay_id] = Advert(capacity, until)
        return out

    async def withdraw(self, relay_id: str) -> None:
        """Remove this relay's advertisement (it is shutting down)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.relay(relay_id))
            pipe.zrem(keys.RELAYS, relay_id)
            await pipe.execute()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
