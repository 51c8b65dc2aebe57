"""Restaurants and cameras in Redis: create, read, update, delete, and API tokens."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import WatchError

from kitchencam import keys
from kitchencam.addresses import AddressPolicy, parse_stream_url
from kitchencam.models import (
    Camera,
    CameraCreate,
    CameraUpdate,
    Restaurant,
    RestaurantCreate,
    RestaurantUpdate,
)
from kitchencam.secretbox import SecretBox

log = logging.getLogger(__name__)

MAX_CAMERAS_PER_RESTAURANT = 64
MAX_PAGE = 500
TOKEN_PREFIX = "kcr_"  # noqa: S105 - a prefix, not a secret
WATCH_RETRIES = 5

T = TypeVar("T")


class RegistryError(Exception):
    """Base of the registry's errors; messages are safe to show to the caller."""


class NotFound(RegistryError):
    """No such restaurant or camera."""


class Conflict(RegistryError):
    """The change conflicts with what is stored (a duplicate, a limit)."""


def new_id() -> str:
    """A new random id (64 bits, hex)."""
    return secrets.token_hex(8)


def token_digest(token: str) -> str:
    """SHA-256 of an API token; tokens are random, so a plain hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> float:
    return round(time.time(), 3)


class Registry:
    """Restaurant and camera records, their indexes and their change stream."""

    def __init__(self, redis: Redis, box: SecretBox, policy: AddressPolicy) -> None:
        self._redis = redis
        self._box = box
        self._policy = policy

    # -- restaurants --------------------------------------------------------------------

    async def create_restaurant(self, data: RestaurantCreate) -> tuple[Restaurant, str]:
        """Store a new restaurant; return it and its API token (shown only this once)."""
        now = _now()
        restaurant = Restaurant(id=new_id(), created_at=now, updated_at=now, **data.model_dump())
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_digest(token)
        licence_key = keys.licence(restaurant.licence_number.upper())
        record = {**restaurant.model_dump(), "token_sha256": digest}

        async def attempt(pipe: Any) -> None:
            await pipe.watch(licence_key)
            if await pipe.exists(licence_key):
                raise Conflict(
                    f"a restaurant with licence number {restaurant.licence_number} is already "
                    "registered; sign in with its token instead"
                )
            pipe.multi()
            pipe.set(licence_key, restaurant.id)
            pipe.set(keys.restaurant(restaurant.id), json.dumps(record))
            pipe.zadd(keys.RESTAURANTS, {restaurant.id: now * 1000})
            pipe.set(keys.token(digest), restaurant.id)
            self._change(pipe, "restaurant", restaurant.id, "create")
            await pipe.execute()

        await self._transact(attempt)
        log.info("restaurant %s registered (district %s)", restaurant.id, restaurant.district)
        return restaurant, token

    async def get_restaurant(self, rid: str) -> Restaurant:
        """The restaurant, or ``NotFound``."""
        raw = await self._redis.get(keys.restaurant(rid))
        if raw is None:
            raise NotFound(f"no restaurant {rid}")
        return Restaurant.model_validate_json(raw)

    async def list_restaurants(self, offset: int = 0, limit: int = 100) -> list[Restaurant]:
        """Restaurants in registration order."""
        ids = await self._redis.zrange(keys.RESTAURANTS, offset, offset + min(limit, MAX_PAGE) - 1)
        return [Restaurant.model_validate_json(r) for r in await self._mget(keys.restaurant, ids)]

    async def count_restaurants(self) -> int:
        """How many restaurants are registered."""
        return int(await self._redis.zcard(keys.RESTAURANTS))

    async def update_restaurant(self, rid: str, data: RestaurantUpdate) -> Restaurant:
        """Apply ``data`` to the restaurant."""
        changes = data.model_dump(exclude_unset=True, exclude_none=True)

        async def attempt(pipe: Any) -> Restaurant:
            key = keys.restaurant(rid)
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                raise NotFound(f"no restaurant {rid}")
            record = {**json.loads(raw), **changes, "updated_at": _now()}
            pipe.multi()
            pipe.set(key, json.dumps(record))
            self._change(pipe, "restaurant", rid, "update")
            await pipe.execute()
            return Restaurant.model_validate(record)

        return await self._transact(attempt)

    async def delete_restaurant(self, rid: str) -> None:
        """Remove the restaurant, its cameras and its token."""

        async def attempt(pipe: Any) -> None:
            key = keys.restaurant(rid)
            await pipe.watch(key, keys.restaurant_cameras(rid))
            raw = await pipe.get(key)
            if raw is None:
                raise NotFound(f"no restaurant {rid}")
            record = json.loads(raw)
            cids = await pipe.zrange(keys.restaurant_cameras(rid), 0, -1)
            pipe.multi()
            for cid in cids:
                pipe.delete(keys.camera(cid))
                pipe.zrem(keys.CAMERAS, cid)
                self._change(pipe, "camera", cid, "delete")
            pipe.delete(key, keys.restaurant_cameras(rid), keys.token(record["token_sha256"]))
            pipe.delete(keys.licence(record["licence_number"].upper()))
            pipe.zrem(keys.RESTAURANTS, rid)
            self._change(pipe, "restaurant", rid, "delete")
            await pipe.execute()

        await self._transact(attempt)
        log.info("restaurant %s deleted", rid)

    async def restaurant_for_token(self, token: str) -> str | None:
        """The id of the restaurant whose API token this is."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        rid = await self._redis.get(keys.token(token_digest(token)))
        return str(rid) if rid is not None else None

    # -- cameras ------------------------------------------------------------------------

    async def create_camera(self, rid: str, data: CameraCreate) -> Camera:
        """Check the camera's addresses against the policy, then store it."""
        await self._check_addresses(data.url, data.substream_url)
        now = _now()
        fields = data.model_dump(exclude={"password"})
        camera = Camera(
            id=new_id(),
            restaurant_id=rid,
            created_at=now,
            updated_at=now,
            password_enc=self._encrypt(data.password),
            **fields,
        )
        index = keys.restaurant_cameras(rid)

        async def attempt(pipe: Any) -> None:
            await pipe.watch(keys.restaurant(rid), index)
            if not await pipe.exists(keys.restaurant(rid)):
                raise NotFound(f"no restaurant {rid}")
            if await pipe.zcard(index) >= MAX_CAMERAS_PER_RESTAURANT:
                raise Conflict(
                    f"a restaurant can register at most {MAX_CAMERAS_PER_RESTAURANT} cameras; "
                    "delete one first"
                )
            pipe.multi()
            pipe.set(keys.camera(camera.id), camera.model_dump_json())
            pipe.zadd(index, {camera.id: now * 1000})
            pipe.zadd(keys.CAMERAS, {camera.id: now * 1000})
            self._change(pipe, "camera", camera.id, "create")
            await pipe.execute()

        await self._transact(attempt)
        log.info("camera %s of restaurant %s registered", camera.id, rid)
        return camera

    async def get_camera(self, cid: str) -> Camera:
        """The camera, or ``NotFound``."""
        raw = await self._redis.get(keys.camera(cid))
        if raw is None:
            raise NotFound(f"no camera {cid}")
        return Camera.model_validate_json(raw)

    async def list_cameras(
        self, rid: str | None = None, offset: int = 0, limit: int = MAX_PAGE
    ) -> list[Camera]:
        """Cameras of one restaurant, or of all, in registration order."""
        index = keys.CAMERAS if rid is None else keys.restaurant_cameras(rid)
        ids = await self._redis.zrange(index, offset, offset + min(limit, MAX_PAGE) - 1)
        return [Camera.model_validate_json(r) for r in await self._mget(keys.camera, ids)]

    async def all_cameras(self) -> list[Camera]:
        """Every camera, fetched in batches (for the relay and the checker)."""
        ids = await self.all_camera_ids()
        cameras: list[Camera] = []
        for start in range(0, len(ids), MAX_PAGE):
            raws = await self._mget(keys.camera, ids[start : start + MAX_PAGE])
            cameras.extend(Camera.model_validate_json(r) for r in raws)
        return cameras

    async def count_cameras(self) -> int:
        """How many cameras are registered."""
        return int(await self._redis.zcard(keys.CAMERAS))

    async def all_camera_ids(self) -> list[str]:
        """Every camera id (for the relay and the checker)."""
        return [str(c) for c in await self._redis.zrange(keys.CAMERAS, 0, -1)]

    async def update_camera(self, cid: str, data: CameraUpdate) -> Camera:
        """Apply ``data`` to the camera, checking changed addresses against the policy."""
        changes = data.model_dump(exclude_unset=True, exclude={"password"})
        if changes.get("url") is None:
            changes.pop("url", None)
        for flag in ("name", "location", "transport", "enabled"):
            if flag in changes and changes[flag] is None:
                del changes[flag]
        await self._check_addresses(changes.get("url"), changes.get("substream_url"))
        if "password" in data.model_fields_set:
            secret = data.password
            changes["password_enc"] = (
                self._encrypt(secret) if secret and secret.get_secret_value() else None
            )

        async def attempt(pipe: Any) -> Camera:
            key = keys.camera(cid)
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                raise NotFound(f"no camera {cid}")
            camera = Camera.model_validate_json(raw).model_copy(
                update={**changes, "updated_at": _now()}
            )
            pipe.multi()
            pipe.set(key, camera.model_dump_json())
            self._change(pipe, "camera", cid, "update")
            await pipe.execute()
            return camera

        camera = await self._transact(attempt)
        log.info("camera %s of restaurant %s updated", cid, camera.restaurant_id)
        return camera

    async def delete_camera(self, cid: str) -> None:
        """Remove the camera."""
        camera = await self.get_camera(cid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.camera(cid))
            pipe.zrem(keys.restaurant_cameras(camera.restaurant_id), cid)
            pipe.zrem(keys.CAMERAS, cid)
            self._change(pipe, "camera", cid, "delete")
            await pipe.execute()
        log.info("camera %s of restaurant %s deleted", cid, camera.restaurant_id)

    def camera_password(self, camera: Camera) -> str | None:
        """The camera's password in clear, for the relay's connection only."""
        return None if camera.password_enc is None else self._box.decrypt(camera.password_enc)

    # -- helpers ------------------------------------------------------------------------

    async def _check_addresses(self, *urls: str | None) -> None:
        for url in urls:
            if url:
                await self._policy.check(parse_stream_url(url))

    def _encrypt(self, secret: Any) -> str | None:
        if secret is None or not secret.get_secret_value():
            return None
        return self._box.encrypt(secret.get_secret_value())

    async def _mget(self, key: Callable[[str], str], ids: list[Any]) -> list[Any]:
        if not ids:
            return []
        return [raw for raw in await self._redis.mget([key(str(i)) for i in ids]) if raw]

    @staticmethod
    def _change(pipe: Any, kind: str, ident: str, op: str) -> None:
        pipe.xadd(
            keys.CHANGES,
            {"kind": kind, "id": ident, "op": op},
            maxlen=keys.CHANGES_MAXLEN,
            approximate=True,
        )

    async def _transact(self, attempt: Callable[[Any], Awaitable[T]]) -> T:
        for _ in range(WATCH_RETRIES):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    return await attempt(pipe)
                except WatchError:
                    continue
        raise Conflict("the record changed while this request was being applied; try again")
