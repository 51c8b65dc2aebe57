"""Camera leases in Redis: which relay pulls which camera, with a fencing token.

``kc:lease:{cid}`` holds ``"{relay_id} {fence}"`` and expires unless its relay renews it;
``kc:fence:{cid}`` counts claims, so every new holder gets a larger token. Relays advertise
where they answer signalling in ``kc:relay:{relay_id}`` (JSON with ``url``, ``capacity``,
``held``) and list themselves in ``kc:relays``, scored by when that advertisement runs out.
What placing cameras needs of the other relays is one aggregate, ``kc:relays:summary`` (relays
per capacity, cameras held in all), recomputed by one relay at a time (:meth:`LeaseStore.roster`),
so that no relay reads every advertisement; free cameras found by one relay's read of every
lease are shared in ``kc:leases:free`` (:meth:`LeaseStore.shared_free`).

Every change of a lease is one Lua script (atomic on the server): claim (``SET`` only if no
lease exists, with the next fence from ``INCR``), renew (``PEXPIRE`` only if the value is still
ours; all of a relay's leases in one call), release (``DEL`` only if still ours). Every write a
relay makes about a camera goes through :class:`FencedBatch`: a script that checks ``GET
kc:lease:{cid}`` against the writer's exact lease value and applies that camera's commands
only if it matches (one call carries many cameras, each checked on its own), so a relay whose
lease moved (it was partitioned, paused, or its lease overwritten) can no longer write about
the camera, and learns so from the refusal. Scripts use only Redis 6.2 commands. Runs on the
event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from redis.asyncio import Redis

from kitchencam import keys

MGET_CHUNK: Final = 1000
"""Lease keys read per ``MGET`` when looking for free cameras."""

_CLAIM: Final = """
redis.call('SREM', KEYS[3], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. fence, 'PX', ARGV[2])
return fence
"""
"""KEYS: lease, fence, the shared list of free cameras; ARGV: relay id, TTL (ms), camera id.
The new fence, or nil if already leased; either way the camera leaves the free list."""

FREE_LIST_S: Final = 2.0
"""Lifetime of the fleet's shared list of free cameras (``kc:leases:free``), and the shortest
time between two reads of every lease by the whole fleet (s)."""

FREE_DRAW: Final = 4
"""Free cameras drawn from the shared list per camera wanted (relays draw at random and race
for the same cameras; the losers try the others)."""

_RENEW: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  elseif current then
    out[i] = current
  else
    out[i] = 0
  end
end
return out
"""
"""KEYS: leases; ARGV: TTL (ms), then our value of each lease. Per lease: 1 renewed, 0
vanished, else the other holder's value."""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""KEYS: lease; ARGV: our value. 1 released, 0 not ours (any more)."""

_FENCED: Final = """
local out = {}
local i = 1
while i <= #ARGV do
  local ok = redis.call('GET', KEYS[tonumber(ARGV[i])]) == ARGV[i + 1]
  local count = tonumber(ARGV[i + 2])
  local replies = {1}
  i = i + 3
  for _ = 1, count do
    local n = tonumber(ARGV[i + 2])
    if ok then
      local reply = redis.call(ARGV[i], KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
      if type(reply) == 'table' and reply.ok then reply = reply.ok end
      replies[#replies + 1] = reply
    end
    i = i + 3 + n
  end
  if ok then out[#out + 1] = replies else out[#out + 1] = 0 end
end
return out
"""
"""Many cameras' fenced batches in one call. KEYS: every lease and every key written; ARGV:
per camera, the index of its lease key, the expected lease value and the command count, then
each command as name, key index, argument count, arguments. One reply per camera: 0 when its
lease check failed (nothing of it written), else 1 and each command's reply."""

FENCED_CAMERAS_PER_CALL: Final = 200
"""Cameras per fenced script call: one call carries a relay's interval of writes, while no
single call keeps Redis busy for long."""

RENEWALS_PER_CALL: Final = 500
"""Leases renewed per script call."""

SUMMARY_MAX_AGE_S: Final = 10.0
"""The relays' summary is recomputed at the latest this long after it was computed (sooner
when an advertisement in it runs out)."""

SUMMARY_LOCK_S: Final = 5.0
"""Longest a relay may take to recompute the summary before another may (s)."""

SUMMARY_TTL_S: Final = 60
"""Lifetime of the stored summary (s): a fleet that stops leaves none behind."""


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
class Roster:
    """The live relays in aggregate (``kc:relays:summary``): how many relays of each capacity,
    the cameras they hold in all, when it was computed and when it runs out (unix s)."""

    capacities: dict[int, int]
    """Capacity -> live relays with that capacity."""
    held: int
    computed: float
    expires: float
    """When the first advertisement counted in it runs out (or its maximum age is reached)."""

    @property
    def relays(self) -> int:
        """Live relays counted."""
        return sum(self.capacities.values())

    def to_json(self) -> str:
        """The stored form."""
        caps = {str(c): n for c, n in self.capacities.items()}
        return json.dumps(
            {"capacities": caps, "held": self.held, "t": self.computed, "expires": self.expires}
        )

    @classmethod
    def from_json(cls, raw: object) -> Roster | None:
        """The summary from its stored form; None when missing or malformed."""
        if raw is None:
            return None
        try:
            data = json.loads(str(raw))
            caps = {int(c): int(n) for c, n in data["capacities"].items()}
            return cls(caps, int(data["held"]), float(data["t"]), float(data["expires"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class FencedBatch:
    """Writes about one camera, applied atomically only while ``lease`` is still current.

    Offers the pipeline methods the writers use (``set``, ``hset``, ``expire``, ``zadd``,
    ``xadd``), so the same staging code fills a plain pipeline or a fenced batch.
    ``execute()`` raises :class:`LeaseLost` when the lease moved.
    """

    def __init__(self, leases: LeaseStore, lease: Lease) -> None:
        self.lease = lease
        self._leases = leases
        self._commands: list[tuple[str, str, list[str]]] = []

    def _add(self, name: str, key: str, args: Sequence[object]) -> Self:
        self._commands.append((name, key, [_arg(a) for a in args]))
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
        return len(self._commands)

    async def execute(self) -> list[Any]:
        """Apply the staged commands if the lease is current; their replies, in order."""
        (reply,) = await self._leases.fenced_calls([self])
        return self.check(reply)

    def check(self, reply: Any) -> list[Any]:
        """The replies from this camera's part of a script reply; ``LeaseLost`` when the
        write was refused."""
        if not isinstance(reply, list) or not reply or reply[0] != 1:
            raise LeaseLost(self.lease.camera_id)
        return list(reply[1:])

    def encode(self, key_index: Callable[[str], int]) -> list[str]:
        """This camera's section of the fenced script's arguments (``key_index`` numbers the
        call's keys from 1)."""
        args = [str(key_index(keys.lease(self.lease.camera_id))), self.lease.value]
        args.append(str(len(self._commands)))
        for name, key, cargs in self._commands:
            args += [name, str(key_index(key)), str(len(cargs)), *cargs]
        return args

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
            keys=[keys.lease(camera_id), keys.fence(camera_id), keys.FREE_CAMERAS],
            args=[relay_id, _ms(ttl_s), camera_id],
        )
        return Lease(camera_id, relay_id, int(fence)) if fence is not None else None

    async def renew(self, leases: Sequence[Lease], ttl_s: float) -> list[Renewal]:
        """Renew many leases, one script call per ``RENEWALS_PER_CALL``; what each found."""
        out = []
        for start in range(0, len(leases), RENEWALS_PER_CALL):
            chunk = leases[start : start + RENEWALS_PER_CALL]
            replies = await self._renew(
                keys=[keys.lease(lease.camera_id) for lease in chunk],
                args=[_ms(ttl_s), *(lease.value for lease in chunk)],
            )
            for lease, reply in zip(chunk, replies, strict=True):
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
        """Run many cameras' fenced batches, ``FENCED_CAMERAS_PER_CALL`` per script call, all
        in one round trip; the ones refused (their lease moved)."""
        replies = await self.fenced_calls(batches)
        refused = []
        for batch, reply in zip(batches, replies, strict=True):
            try:
                batch.check(reply)
            except LeaseLost:
                refused.append(batch)
        return refused

    async def fenced_calls(self, batches: Sequence[FencedBatch]) -> list[Any]:
        """Each batch's part of the fenced script's replies (one call per chunk of cameras,
        the calls pipelined)."""
        if not batches:
            return []
        calls = []
        for start in range(0, len(batches), FENCED_CAMERAS_PER_CALL):
            call_keys: dict[str, int] = {}

            def index(key: str, call_keys: dict[str, int] = call_keys) -> int:
                return call_keys.setdefault(key, len(call_keys) + 1)

            chunk = batches[start : start + FENCED_CAMERAS_PER_CALL]
            args = [a for batch in chunk for a in batch.encode(index)]
            calls.append((list(call_keys), args))
        if len(calls) == 1:  # a plain call: a pipeline would check the script first
            ((call_keys_list, args),) = calls
            replies: list[Any] = [await self.fenced_script(keys=call_keys_list, args=args)]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for call_keys_list, args in calls:
                    await self.fenced_script(keys=call_keys_list, args=args, client=pipe)
                replies = await pipe.execute(raise_on_error=False)
        out: list[Any] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            out += list(reply)
        return out

    async def shared_free(self, relay_id: str, camera_ids: Sequence[str], want: int) -> list[str]:
        """Free cameras for a relay that wants ``want`` more: drawn from the fleet's shared
        list; when that is empty, one relay at a time (per ``FREE_LIST_S``) reads the leases
        of every camera in ``camera_ids`` and publishes the free ones for all."""
        drawn = await self.redis.srandmember(keys.FREE_CAMERAS, max(1, want) * FREE_DRAW)
        if drawn:
            return [str(c) for c in drawn]
        lock = keys.FREE_CAMERAS_LOCK
        if not await self.redis.set(lock, relay_id, nx=True, px=_ms(FREE_LIST_S)):
            return []  # another relay is reading the leases: draw from its list next time
        free = await self.free(camera_ids)
        if free:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.FREE_CAMERAS)
                pipe.sadd(keys.FREE_CAMERAS, *free)
                pipe.pexpire(keys.FREE_CAMERAS, _ms(FREE_LIST_S))
                await pipe.execute()
        return free

    async def free(self, camera_ids: Sequence[str]) -> list[str]:
        """The cameras among ``camera_ids`` that no relay holds now."""
        out: list[str] = []
        for start in range(0, len(camera_ids), MGET_CHUNK):
            chunk = camera_ids[start : start + MGET_CHUNK]
            values = await self.redis.mget([keys.lease(c) for c in chunk])
            out += [cid for cid, value in zip(chunk, values, strict=True) if value is None]
        return out

    async def advertise(
        self,
        relay_id: str,
        url: str,
        capacity: int,
        held: int,
        ttl_s: float,
        *,
        fresh: bool = False,
    ) -> Roster | None:
        """Publish this relay's advertisement; return the live relays' summary, recomputed
        here when it ran out and no other relay is recomputing it (or at once with
        ``fresh``). O(1) commands per call, apart from the occasional recomputation."""
        now = time.time()
        until = now + ttl_s
        body = json.dumps({"url": url, "capacity": capacity, "held": held, "until": until})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.relay(relay_id), body, px=_ms(ttl_s))
            pipe.zadd(keys.RELAYS, {relay_id: until})
            pipe.zremrangebyscore(keys.RELAYS, "-inf", now)
            pipe.get(keys.RELAYS_SUMMARY)
            replies = await pipe.execute()
        roster = Roster.from_json(replies[-1])
        if fresh or roster is None or roster.expires <= now:
            roster = await self.roster(relay_id, force=fresh) or roster
        return roster

    async def roster(self, relay_id: str, *, force: bool = False) -> Roster | None:
        """The live relays' summary: read it, and recompute it when it ran out and this relay
        wins the lock for that (or with ``force``); None when there is none yet."""
        now = time.time()
        roster = Roster.from_json(await self.redis.get(keys.RELAYS_SUMMARY))
        if not force and roster is not None and roster.expires > now:
            return roster
        if force:
            return await self.summarise()
        lock = keys.RELAYS_SUMMARY_LOCK
        if not await self.redis.set(lock, relay_id, nx=True, px=_ms(SUMMARY_LOCK_S)):
            return roster  # another relay is recomputing it; read it at the next scan
        try:
            return await self.summarise()
        finally:
            await self.redis.delete(lock)

    async def summarise(self) -> Roster:
        """Read every live relay's advertisement and store their summary (one relay does
        this for the fleet, about every ``SUMMARY_MAX_AGE_S`` or when a relay ran out)."""
        now = time.time()
        ids = [str(r) for r in await self.redis.zrangebyscore(keys.RELAYS, now, "+inf")]
        capacities: dict[int, int] = {}
        held = 0
        expires = now + SUMMARY_MAX_AGE_S
        for start in range(0, len(ids), MGET_CHUNK):
            chunk = ids[start : start + MGET_CHUNK]
            for advert in await self.redis.mget([keys.relay(r) for r in chunk]):
                try:
                    data = json.loads(str(advert))
                    capacity = int(data["capacity"])
                    count = int(data.get("held", 0))
                    ends = float(data.get("until", expires))
                except (ValueError, KeyError, TypeError):
                    continue
                if capacity > 0:
                    capacities[capacity] = capacities.get(capacity, 0) + 1
                held += count
                expires = min(expires, ends)
        roster = Roster(capacities, held, now, expires)
        await self.redis.set(keys.RELAYS_SUMMARY, roster.to_json(), ex=SUMMARY_TTL_S)
        return roster

    async def withdraw(self, relay_id: str) -> None:
        """Remove this relay's advertisement (it is shutting down); the summary is dropped so
        that the next relay to read it recomputes it without this one."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.relay(relay_id))
            pipe.zrem(keys.RELAYS, relay_id)
            pipe.delete(keys.RELAYS_SUMMARY)
            await pipe.execute()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
