"""Restaurants' sign-in accounts (e-mail and argon2 password hash) and sign-in rate limits.

A restaurant signs in to the portal with an e-mail address and a password; the record maps the
address to the restaurant. Passwords are hashed with argon2id (memory-hard), off the event loop.
Failed sign-ins are counted per account and per client address in fixed windows that expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from kitchencam import keys
from kitchencam.registry import Conflict

MAX_EMAIL_LENGTH = 254
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251})\.[A-Za-z]{2,63}$")

MAX_FAILS_PER_ACCOUNT = 5
"""Failed sign-ins allowed per account in ``FAIL_WINDOW_S``."""
MAX_FAILS_PER_ADDRESS = 20
"""Failed sign-ins allowed per client address in ``FAIL_WINDOW_S``."""
FAIL_WINDOW_S = 15 * 60


class Account(BaseModel):
    """A restaurant's stored sign-in account."""

    email: str
    restaurant_id: str
    password_hash: str = Field(repr=False)
    created_at: float


def check_email(email: str) -> str:
    """The address normalised (trimmed, lower case), or ``ValueError`` saying what is wrong."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise ValueError("enter an e-mail address such as kitchen@example.com")
    return email


class Accounts:
    """Restaurant sign-in accounts in Redis."""

    def __init__(self, redis: Redis, hasher: PasswordHasher | None = None) -> None:
        self._redis = redis
        self._hasher = hasher or PasswordHasher()

    async def exists(self, email: str) -> bool:
        """Whether an account of an existing restaurant uses this address."""
        return await self._live(check_email(email)) is not None

    async def _live(self, email: str) -> Account | None:
        """The account, unless missing; an account whose restaurant was deleted (through the
        API, which knows nothing of accounts) is removed here."""
        raw = await self._redis.get(keys.account(email))
        if raw is None:
            return None
        account = Account.model_validate(json.loads(raw))
        if not await self._redis.exists(keys.restaurant(account.restaurant_id)):
            await self._redis.delete(
                keys.account(email), keys.restaurant_account(account.restaurant_id)
            )
            return None
        return account

    async def create(self, email: str, restaurant_id: str, password: str) -> Account:
        """Store the account; ``Conflict`` if the address is taken."""
        email = check_email(email)
        digest = await asyncio.to_thread(self._hasher.hash, password)
        account = Account(
            email=email,
            restaurant_id=restaurant_id,
            password_hash=digest,
            created_at=round(time.time(), 3),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.account(email), account.model_dump_json(), nx=True)
            pipe.set(keys.restaurant_account(restaurant_id), email, nx=True)
            created, linked = await pipe.execute()
        if not created or not linked:
            if created:
                await self._redis.delete(keys.account(email))
            if linked:
                await self._redis.delete(keys.restaurant_account(restaurant_id))
            raise Conflict("an account with this e-mail address exists already; sign in instead")
        return account

    async def email_of(self, restaurant_id: str) -> str | None:
        """The address the restaurant signs in with."""
        email = await self._redis.get(keys.restaurant_account(restaurant_id))
        return str(email) if email is not None else None

    async def verify(self, email: str, password: str) -> str | None:
        """The restaurant id if ``password`` is right for ``email``, else ``None``."""
        try:
            account = await self._live(check_email(email))
        except ValueError:
            return None
        if account is None:
            return None
        try:
            await asyncio.to_thread(self._hasher.verify, account.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return account.restaurant_id


def account_key(identity: str) -> str:
    """The rate-limit name of an account (hashed: any text a person types is a safe key)."""
    return "a:" + hashlib.sha256(identity.strip().lower().encode()).hexdigest()


def retry_after(fails: int, limit: int, ttl_s: int) -> int:
    """Seconds to wait before trying again: 0 while under ``limit``, else the window's rest."""
    if fails < limit:
        return 0
    return max(1, ttl_s)


def minutes(seconds: int) -> str:
    """``seconds`` as a person reads a wait: "1 minute", "15 minutes"."""
    n = max(1, math.ceil(seconds / 60))
    return f"{n} minute" if n == 1 else f"{n} minutes"


class SignInLimiter:
    """Counts failed sign-ins per account and per client address, in windows that expire."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def wait_s(self, identity: str, address: str) -> int:
        """Seconds before this account or address may try again (0: now)."""
        names = [keys.signin_fails(account_key(identity)), keys.signin_fails("ip:" + address)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
                pipe.ttl(name)
            account_fails, account_ttl, address_fails, address_ttl = await pipe.execute()
        return max(
            retry_after(int(account_fails or 0), MAX_FAILS_PER_ACCOUNT, int(account_ttl)),
            retry_after(int(address_fails or 0), MAX_FAILS_PER_ADDRESS, int(address_ttl)),
        )

    async def failed(self, identity: str, address: str) -> None:
        """Count a failed attempt against the account and the address."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for name in (
                keys.signin_fails(account_key(identity)),
                keys.signin_fails("ip:" + address),
            ):
                # The window starts at the first failure; INCR keeps the expiry.
                pipe.set(name, 0, ex=FAIL_WINDOW_S, nx=True)
                pipe.incr(name)
            await pipe.execute()

    async def succeeded(self, identity: str) -> None:
        """Forget the account's failures (the address's stay counted)."""
        await self._redis.delete(keys.signin_fails(account_key(identity)))
