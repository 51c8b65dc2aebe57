"""The Redis key schema: every key KitchenCam uses is named here, and only here.

All keys start with ``kc:``. Records are JSON strings written with one ``MULTI``/``EXEC``
together with their indexes, so a crash never leaves a record without its index entries.

| key | type | holds |
|---|---|---|
| ``kc:meta:schema`` | string | schema version of the data (``SCHEMA_VERSION``) |
| ``kc:meta:key-check`` | string | fingerprint of the key that encrypts camera passwords |
| ``kc:restaurants`` | sorted set | restaurant ids, scored by creation time (ms) |
| ``kc:restaurant:{rid}`` | string | restaurant record (JSON) |
| ``kc:restaurant:{rid}:cameras`` | sorted set | the restaurant's camera ids, by creation time |
| ``kc:licence:{licence}`` | string | restaurant id holding a food-business licence number |
| ``kc:token:{sha256}`` | string | restaurant id of an API token (only the hash is stored) |
| ``kc:cameras`` | sorted set | every camera id, by creation time |
| ``kc:camera:{cid}`` | string | camera record (JSON; the password encrypted) |
| ``kc:users`` | sorted set | user names, by creation time |
| ``kc:user:{name}`` | string | user record (JSON: role, password hash, token hash) |
| ``kc:usertoken:{sha256}`` | string | user name of a user API token |
| ``kc:changes`` | stream | registry changes: ``kind``, ``id``, ``op`` (``CHANGES_MAXLEN``) |
| ``kc:role:{role}:{instance}`` | string | heartbeat of a running role instance, expires |
"""

from __future__ import annotations

SCHEMA_VERSION = "1"
CHANGES_MAXLEN = 100_000
ROLE_HEARTBEAT_TTL_S = 15

META_SCHEMA = "kc:meta:schema"
META_KEY_CHECK = "kc:meta:key-check"
RESTAURANTS = "kc:restaurants"
CAMERAS = "kc:cameras"
USERS = "kc:users"
CHANGES = "kc:changes"


def restaurant(rid: str) -> str:
    """The restaurant record."""
    return f"kc:restaurant:{rid}"


def restaurant_cameras(rid: str) -> str:
    """The restaurant's camera ids."""
    return f"kc:restaurant:{rid}:cameras"


def licence(number: str) -> str:
    """Which restaurant holds a licence number."""
    return f"kc:licence:{number}"


def token(digest: str) -> str:
    """Which restaurant an API token (by its SHA-256) belongs to."""
    return f"kc:token:{digest}"


def camera(cid: str) -> str:
    """The camera record."""
    return f"kc:camera:{cid}"


def user(name: str) -> str:
    """The user record."""
    return f"kc:user:{name}"


def user_token(digest: str) -> str:
    """Which user an API token (by its SHA-256) belongs to."""
    return f"kc:usertoken:{digest}"


def role_heartbeat(role: str, instance: str) -> str:
    """A running role instance's heartbeat."""
    return f"kc:role:{role}:{instance}"


def role_heartbeat_pattern(role: str) -> str:
    """Pattern matching every heartbeat of ``role``."""
    return f"kc:role:{role}:*"
