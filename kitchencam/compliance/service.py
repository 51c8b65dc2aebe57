"""The checker role: for now it only reports that it runs (analysis lands with the checker)."""

from __future__ import annotations

import asyncio

from kitchencam.roles import RoleSet


async def run(roles: RoleSet) -> None:
    """Mark the role running and wait until cancelled."""
    roles.set("checker", True, "running")
    await asyncio.Event().wait()
