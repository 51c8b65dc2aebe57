"""Restaurants and cameras: what the API accepts, what Redis stores, what responses show."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
)

from kitchencam.addresses import StreamAddress, parse_stream_url

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (line breaks, tabs...)")
    return value


def _no_colon(value: str) -> str:
    # RTSP clients (FFmpeg among them) split user:password at the first colon.
    if ":" in value:
        raise ValueError("RTSP user names cannot contain ':' (passwords can)")
    return value


def _stream(value: str) -> str:
    return parse_stream_url(value).url


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_no_control),
]
Licence = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{3,63}$"),
]
StreamUrl = Annotated[str, AfterValidator(_stream)]
Username = Annotated[
    str, StringConstraints(max_length=128), AfterValidator(_no_control), AfterValidator(_no_colon)
]
Password = Annotated[SecretStr, Field(max_length=256)]
Transport = Literal["tcp", "udp"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RestaurantCreate(_Input):
    """A restaurant registering itself."""

    name: Text
    address: LongText
    district: Text
    licence_number: Licence = Field(
        description="Food-business licence number (4-64 letters, digits, -)"
    )
    contact: Text


class RestaurantUpdate(_Input):
    """Changes to a restaurant (fields left out stay as they are)."""

    name: Text | None = None
    address: LongText | None = None
    district: Text | None = None
    contact: Text | None = None


class CameraCreate(_Input):
    """A camera being registered."""

    name: Text
    location: Text = Field(description="Where in the kitchen the camera looks, e.g. 'wok station'")
    url: StreamUrl
    username: Username | None = None
    password: Password | None = None
    substream_url: StreamUrl | None = None
    transport: Transport = "tcp"
    enabled: bool = True


class CameraUpdate(_Input):
    """Changes to a camera; ``password`` set to null or "" removes it, left out keeps it."""

    name: Text | None = None
    location: Text | None = None
    url: StreamUrl | None = None
    username: Username | None = None
    password: Password | None = None
    substream_url: StreamUrl | None = None
    transport: Transport | None = None
    enabled: bool | None = None


class Restaurant(BaseModel):
    """A stored restaurant."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    address: str
    district: str
    licence_number: str
    contact: str
    created_at: float
    updated_at: float

    def public(self) -> dict[str, object]:
        """What API responses show."""
        return self.model_dump()


class Camera(BaseModel):
    """A stored camera; ``password_enc`` is the encrypted password."""

    model_config = ConfigDict(extra="ignore")

    id: str
    restaurant_id: str
    name: str
    location: str
    url: str
    substream_url: str | None = None
    username: str | None = None
    password_enc: str | None = Field(default=None, repr=False)
    transport: Transport = "tcp"
    enabled: bool = True
    created_at: float
    updated_at: float

    @property
    def stream(self) -> StreamAddress:
        """The main stream's address."""
        return parse_stream_url(self.url)

    @property
    def substream(self) -> StreamAddress | None:
        """The sub-stream's address, if any."""
        return parse_stream_url(self.substream_url) if self.substream_url else None

    def public(self, *, owner: bool) -> dict[str, object]:
        """What API responses show: never the password; the user name only to the owner."""
        stream = self.stream
        shown: dict[str, object] = {
            "id": self.id,
            "restaurant_id": self.restaurant_id,
            "name": self.name,
            "location": self.location,
            "url": self.url,
            "stream": {
                "scheme": stream.scheme,
                "host": stream.host,
                "port": stream.port,
                "path": stream.path,
            },
            "substream_url": self.substream_url,
            "has_password": self.password_enc is not None,
            "transport": self.transport,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if owner:
            shown["username"] = self.username
        return shown
