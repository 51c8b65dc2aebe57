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
| ``kc:session:{sha256}`` | string | a browser session (JSON: kind, ident, csrf, t); expires |
| ``kc:account:{email}`` | string | a restaurant's sign-in account (JSON: restaurant, argon2 hash) |
| ``kc:restaurant:{rid}:account`` | string | e-mail address the restaurant signs in with |
| ``kc:signin:fails:{who}`` | string | failed sign-ins of ``a:{sha256}`` or ``ip:{ip}``; expires |
| ``kc:changes`` | stream | registry changes: ``kind``, ``id``, ``op`` (``CHANGES_MAXLEN``) |
| ``kc:role:{role}:{instance}`` | string | heartbeat of a running role instance, expires |
| ``kc:live:{cid}`` | string | the relay's figures for a camera it pulls (JSON), expires |
| ``kc:lease:{cid}`` | string | the relay pulling the camera: ``{relay_id} {fence}``; expires |
| ``kc:fence:{cid}`` | string | the camera's fencing counter (``INCR`` at every claim) |
| ``kc:relays`` | sorted set | relay ids, scored by when their advertisement runs out (s) |
| ``kc:relay:{relay_id}`` | string | a relay's ``url``, ``capacity``, ``held`` (JSON), expires |
| ``kc:relays:summary`` | string | live relays per capacity, cameras held in all (JSON); expires |
| ``kc:relays:summary:lock`` | string | the relay recomputing the summary; expires |
| ``kc:leases:free`` | set | cameras a relay found unleased, for others to claim; expires |
| ``kc:leases:free:lock`` | string | the relay reading every lease to refill it; expires |
| ``kc:transitions`` | stream | compliance news for the checker (group ``checkers``) |
| ``kc:camera:{cid}:relay`` | string | the relay analysing the camera; expires (``HELD_TTL_S``) |
| ``kc:held`` | sorted set | camera ids, scored by when their hold runs out (s) |
| ``kc:camera:{cid}:monitor`` | string | relay-side monitor memory and baseline (JSON) |
| ``kc:camera:{cid}:state`` | string | the camera's published compliance state (JSON) |
| ``kc:camera:{cid}:reference`` | hash | approved reference view: ``meta`` (JSON), ``jpeg`` |
| ``kc:camera:{cid}:preview`` | hash | latest preview picture: ``jpeg``, ``sha``, ``t``; expires |
| ``kc:snapshot:{sha256}`` | hash | evidence JPEG (base64), camera, restaurant, time; expires |
| ``kc:event:{eid}`` | string | a compliance event (JSON; ``eid``: its news entry id); expires |
| ``kc:applied:{eid}`` | string | a news entry a checker applied (idempotence); expires |
| ``kc:events`` | sorted set | every event id, scored by event time (s) |
| ``kc:camera:{cid}:events`` | sorted set | the camera's event ids, by event time |
| ``kc:restaurant:{rid}:events`` | sorted set | the restaurant's event ids, by event time |
| ``kc:restaurant:{rid}:webhook`` | string | webhook URL and encrypted secret (JSON) |
| ``kc:restaurant:{rid}:webhook:log`` | list | latest webhook attempts (JSON, newest first) |
| ``kc:webhook:queue`` | sorted set | event ids awaiting webhook delivery, by next attempt |
| ``kc:webhook:delivery:{eid}`` | string | one webhook delivery's progress (JSON), expires |
| ``kc:webhook:delivery:{eid}:lock`` | string | the checker attempting that delivery; expires |
| ``kc:board`` | stream | published state changes for live boards (``BOARD_MAXLEN``) |
| ``kc:audit`` | stream | regulators' audit log (acknowledgements); never trimmed |
| ``kc:camera:{cid}:audit`` | stream | the same audit entries of one camera; never trimmed |

Compliance news (``kc:transitions``) fields: ``kind`` (monitor, held, lost, switch,
registered, deleted), ``camera``, ``t``, ``from``, ``to``, ``cause``, ``detail``,
``measures`` (JSON), ``snapshot`` and ``last_good`` (SHA-256), ``relay``, ``enabled``.
Relays write ``kc:camera:{cid}:relay`` (``SET EX``) and ``kc:held`` (``ZADD``) for all their
cameras in one pipeline every ``HELD_REFRESH_S``. Every write a relay makes about a camera
(figures, holds, monitor, news, previews, automatic references) is fenced by the camera's
lease: a Lua script applies it only while ``kc:lease:{cid}`` still holds that relay's exact
value (``kitchencam.relay.leases``).

Board changes (``kc:board``) fields: ``camera``, ``restaurant``, ``district``, ``state``,
``since``, ``cause``, ``detail`` (``state`` is empty when the camera was deleted); written by
the checker in the same ``MULTI`` as the published state. Audit entries (``kc:audit`` and
``kc:camera:{cid}:audit``, one ``MULTI``): ``action``, ``who``, ``t``, ``camera``,
``restaurant``, ``event``, ``note``.
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


def session(digest: str) -> str:
    """A browser session, by the SHA-256 of its cookie value."""
    return f"kc:session:{digest}"


def account(email: str) -> str:
    """A restaurant's sign-in account, by its (lower-case) e-mail address."""
    return f"kc:account:{email}"


def restaurant_account(rid: str) -> str:
    """The e-mail address the restaurant signs in with."""
    return f"kc:restaurant:{rid}:account"


def signin_fails(who: str) -> str:
    """Recent failed sign-ins of an account or a client address."""
    return f"kc:signin:fails:{who}"


def live(cid: str) -> str:
    """A pulled camera's figures, written by its relay."""
    return f"kc:live:{cid}"


RELAYS = "kc:relays"
RELAYS_SUMMARY = "kc:relays:summary"
"""The live relays in aggregate, recomputed by one relay at a time (``LeaseStore.roster``)."""
RELAYS_SUMMARY_LOCK = "kc:relays:summary:lock"
FREE_CAMERAS = "kc:leases:free"
"""Unleased cameras one relay found by reading every lease (``LeaseStore.shared_free``)."""
FREE_CAMERAS_LOCK = "kc:leases:free:lock"


def lease(cid: str) -> str:
    """Which relay pulls the camera, and its fencing token; expires unless renewed."""
    return f"kc:lease:{cid}"


def fence(cid: str) -> str:
    """The camera's fencing counter."""
    return f"kc:fence:{cid}"


def relay(relay_id: str) -> str:
    """A relay's advertisement: where web processes forward its viewers' signalling."""
    return f"kc:relay:{relay_id}"


def role_heartbeat(role: str, instance: str) -> str:
    """A running role instance's heartbeat."""
    return f"kc:role:{role}:{instance}"


def role_heartbeat_pattern(role: str) -> str:
    """Pattern matching every heartbeat of ``role``."""
    return f"kc:role:{role}:*"


# -- compliance ------------------------------------------------------------------------------

TRANSITIONS = "kc:transitions"
TRANSITIONS_MAXLEN = 1_000_000
CHECKER_GROUP = "checkers"
HELD = "kc:held"
HELD_TTL_S = 15
HELD_REFRESH_S = 5.0
EVENTS = "kc:events"
WEBHOOK_QUEUE = "kc:webhook:queue"
WEBHOOK_LOG_LENGTH = 100
APPLIED_TTL_S = 30 * 86400


def camera_relay(cid: str) -> str:
    """Which relay analyses the camera (expires unless refreshed)."""
    return f"kc:camera:{cid}:relay"


def camera_monitor(cid: str) -> str:
    """The relay-side monitor's memory and baseline."""
    return f"kc:camera:{cid}:monitor"


def camera_state(cid: str) -> str:
    """The camera's published compliance state."""
    return f"kc:camera:{cid}:state"


def camera_reference(cid: str) -> str:
    """The camera's approved reference view."""
    return f"kc:camera:{cid}:reference"


def camera_preview(cid: str) -> str:
    """The camera's latest preview picture."""
    return f"kc:camera:{cid}:preview"


def camera_events(cid: str) -> str:
    """The camera's event ids by time."""
    return f"kc:camera:{cid}:events"


def restaurant_events(rid: str) -> str:
    """The restaurant's event ids by time."""
    return f"kc:restaurant:{rid}:events"


def snapshot(sha: str) -> str:
    """An evidence JPEG and what it shows."""
    return f"kc:snapshot:{sha}"


def event(eid: str) -> str:
    """One compliance event."""
    return f"kc:event:{eid}"


def webhook(rid: str) -> str:
    """A restaurant's webhook settings."""
    return f"kc:restaurant:{rid}:webhook"


def webhook_log(rid: str) -> str:
    """A restaurant's latest webhook attempts."""
    return f"kc:restaurant:{rid}:webhook:log"


def webhook_delivery(eid: str) -> str:
    """One webhook delivery's progress."""
    return f"kc:webhook:delivery:{eid}"


def applied(eid: str) -> str:
    """Marks a ``kc:transitions`` entry as applied."""
    return f"kc:applied:{eid}"


# -- regulators' board -----------------------------------------------------------------------

BOARD = "kc:board"
BOARD_MAXLEN = 10_000
"""State changes kept for boards to resume from (a few minutes at a country's change rate)."""
AUDIT = "kc:audit"


def camera_audit(cid: str) -> str:
    """The audit entries about one camera (a copy of its ``kc:audit`` entries)."""
    return f"kc:camera:{cid}:audit"
