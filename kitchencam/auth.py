"""Who is asking: a restaurant (API token), a regulator (API token), or nobody."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from kitchencam import appkeys
from kitchencam.httperrors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kitchencam"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``kind`` is "restaurant" or "regulator"; ``ident`` its id or user name."""

    kind: str
    ident: str

    @property
    def is_regulator(self) -> bool:
        """Whether the caller is a regulator."""
        return self.kind == "regulator"

    def owns(self, restaurant_id: str) -> bool:
        """Whether the caller is this restaurant."""
        return self.kind == "restaurant" and self.ident == restaurant_id


async def principal(request: web.Request) -> Principal:
    """The authenticated caller, or ``ApiError(401)``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "send your API token as 'Authorization: Bearer <token>' (restaurants get theirs "
            "when they register; regulators from `kitchencam user add`)",
            headers=_CHALLENGE,
        )
    rid = await request.app[appkeys.REGISTRY].restaurant_for_token(token)
    if rid is not None:
        return Principal("restaurant", rid)
    user = await request.app[appkeys.USERS].for_token(token)
    if user is not None:
        return Principal(user.role, user.name)
    raise ApiError(401, "this API token is not valid (revoked or mistyped)", headers=_CHALLENGE)


def require_access(who: Principal, restaurant_id: str, *, write: bool = False) -> None:
    """``ApiError(403)`` unless ``who`` may read (regulators, the owner) or write (the owner)."""
    if who.owns(restaurant_id) or (who.is_regulator and not write):
        return
    raise ApiError(403, "this token does not give access to that restaurant")
