"""People who sign in (regulators): accounts, memory-hard password hashes, API tokens."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from kitchencam import keys
from kitchencam.registry import Conflict, NotFound, token_digest

Role = Literal["regulator"]
ROLES: tuple[Role, ...] = ("regulator",)
TOKEN_PREFIX = "kcu_"  # noqa: S105 - a prefix, not a secret
MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")


class User(BaseModel):
    """A stored account."""

    name: str
    role: Role
    password_hash: str = Field(repr=False)
    token_sha256: str = Field(repr=False)
    created_at: float

    def public(self) -> dict[str, object]:
        """What listings show."""
        return {"name": self.name, "role": self.role, "created_at": self.created_at}


def check_name(name: str) -> str:
    """A valid user name (lower case), or ``ValueError`` saying what is allowed."""
    name = name.strip().lower()
    if not _NAME.match(name):
        raise ValueError(
            "user names are 2-64 characters: letters, digits, '.', '_', '@', '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """The password if it is long enough, or ``ValueError``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return password


class Users:
    """Account storage and verification."""

    def __init__(self, redis: Redis, hasher: PasswordHasher | None = None) -> None:
        self._redis = redis
        self._hasher = hasher or PasswordHasher()

    async def add(self, name: str, role: Role, password: str) -> tuple[User, str]:
        """Create an account; return it and its API token (shown only this once)."""
        name = check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        user = User(
            name=name,
            role=role,
            password_hash=self._hasher.hash(check_password(password)),
            token_sha256=token_digest(token),
            created_at=round(time.time(), 3),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.user(name), user.model_dump_json(), nx=True)
            pipe.zadd(keys.USERS, {name: user.created_at * 1000}, nx=True)
            pipe.set(keys.user_token(user.token_sha256), name)
            created, _, _ = await pipe.execute()
        if not created:
            await self._redis.delete(keys.user_token(user.token_sha256))
            raise Conflict(f"user {name} exists already; remove it first to replace it")
        return user, token

    async def get(self, name: str) -> User:
        """The account, or ``NotFound``."""
        raw = await self._redis.get(keys.user(name.lower()))
        if raw is None:
            raise NotFound(f"no user {name}")
        return User.model_validate_json(raw)

    async def list(self) -> list[User]:
        """Every account, oldest first."""
        names = await self._redis.zrange(keys.USERS, 0, -1)
        if not names:
            return []
        raws = await self._redis.mget([keys.user(str(n)) for n in names])
        return [User.model_validate(json.loads(r)) for r in raws if r]

    async def remove(self, name: str) -> None:
        """Delete the account and its token."""
        user = await self.get(name)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.user(user.name), keys.user_token(user.token_sha256))
            pipe.zrem(keys.USERS, user.name)
            await pipe.execute()

    async def verify_password(self, name: str, password: str) -> User | None:
        """The account if ``password`` is right, else ``None``."""
        try:
            user = await self.get(name)
        except (NotFound, ValueError):
            return None
        try:
            self._hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return user

    async def for_token(self, token: str) -> User | None:
        """The account whose API token this is."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        name = await self._redis.get(keys.user_token(token_digest(token)))
        if name is None:
            return None
        try:
            return await self.get(str(name))
        except NotFound:
            return None
