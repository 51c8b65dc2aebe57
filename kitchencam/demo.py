"""``kitchencam serve --demo``: a demo restaurant with simulated cameras and a demo regulator.

Idempotent: the restaurant is found again by its licence number, missing cameras are added,
and the regulator keeps its password across restarts (kept in the data directory, mode 0600,
like the generated secret key). The cameras are ordinary registrations on the reserved
``demo.invalid`` domain, which only a demo process serves (see ``kitchencam.relay.demo``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from aiohttp import web
from redis.asyncio import Redis

from kitchencam import appkeys, keys
from kitchencam.models import CameraCreate, RestaurantCreate
from kitchencam.registry import NotFound, Registry
from kitchencam.users import Users

log = logging.getLogger(__name__)

LICENCE: Final = "DEMO-KITCHEN-0001"
REGULATOR: Final = "demo-regulator"
SIGN_IN_FILE: Final = "demo-regulator.txt"
"""The demo regulator's password, kept in the data directory (mode 0600)."""
RESTAURANT: Final = RestaurantCreate(
    name="Golden Wok (demo)",
    address="1 Demo Street",
    district="Demo District",
    licence_number=LICENCE,
    contact="+852 5555 0000",
)
CAMERAS: Final = (
    ("Wok line", "hot kitchen, above the woks", "rtsp://wok-line.demo.invalid/live"),
    ("Prep table", "cold kitchen, prep table", "rtsp://prep-table.demo.invalid/live-covered"),
    ("Dish pass", "pass, where dishes leave", "rtsp://dish-pass.demo.invalid/live"),
)
"""The demo cameras: name, location, address. The prep table gets covered now and then."""


@dataclass(frozen=True, slots=True)
class DemoSignIn:
    """What the console shows: the demo restaurant and how to sign in as its regulator."""

    restaurant_id: str
    regulator: str
    password: str

    def lines(self, base: str) -> list[str]:
        """The console lines for a server at ``base`` (``http://host:port``)."""
        return [
            "",
            "KitchenCam demo is ready:",
            f"  watch page (consumers):   {base}/r/{self.restaurant_id}",
            f"  compliance board:         {base}/board",
            f"    sign in at {base}/signin as {self.regulator} with password {self.password}",
            f"  restaurant sign-up:       {base}/signup",
            "  The Prep table camera is covered for 40 s of every 3 minutes; the board flags it.",
            "",
        ]


async def setup(redis: Redis, registry: Registry, data_dir: Path) -> DemoSignIn:
    """Create (or find) the demo restaurant, its cameras and the demo regulator."""
    rid = await _restaurant(redis, registry)
    existing = {c.name for c in await registry.list_cameras(rid)}
    for name, location, url in CAMERAS:
        if name not in existing:
            await registry.create_camera(
                rid, CameraCreate(name=name, location=location, url=url, enabled=True)
            )
    password = await _regulator(Users(redis), data_dir / SIGN_IN_FILE)
    return DemoSignIn(rid, REGULATOR, password)


async def _restaurant(redis: Redis, registry: Registry) -> str:
    rid = await redis.get(keys.licence(LICENCE))
    if rid is not None:
        try:
            return (await registry.get_restaurant(str(rid))).id
        except NotFound:
            pass
    restaurant, _token = await registry.create_restaurant(RESTAURANT)
    log.info("demo restaurant %s created", restaurant.id)
    return restaurant.id


async def _regulator(users: Users, password_file: Path) -> str:
    """The demo regulator's password: the kept one if it still signs in, else a new one."""
    kept = _read_kept(password_file)
    if kept and await users.verify_password(REGULATOR, kept) is not None:
        return kept
    password = secrets.token_urlsafe(12)
    try:
        await users.remove(REGULATOR)
    except NotFound:
        pass
    await users.add(REGULATOR, "regulator", password)
    _keep(password_file, password)
    return password


def _read_kept(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _keep(path: Path, password: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")


def console_base(host: str, port: int, public_url: str | None) -> str:
    """The address to print for people on this machine."""
    if public_url:
        return public_url.rstrip("/")
    try:
        unspecified = not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    shown = "127.0.0.1" if unspecified else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}"


def announce_ctx(
    out: TextIO | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` that sets the demo up once Redis answers and prints the sign-in."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        sign_in = await setup(app[appkeys.REDIS], app[appkeys.REGISTRY], settings.data_dir)
        base = console_base(settings.host, settings.port, settings.public_url)
        stream = out or sys.stdout
        stream.write("\n".join(sign_in.lines(base)) + "\n")
        stream.flush()
        yield

    return ctx
