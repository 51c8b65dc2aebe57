"""The one validated settings model, read from ``KITCHENCAM_*`` environment variables once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "KITCHENCAM_"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(Exception):
    """A setting has a value that is not allowed; the message names it and says what is."""


class Settings(BaseModel):
    """Every setting of every role; see the README's settings table."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    data_dir: Path = Field(
        Path("kitchencam-data"),
        description="Directory for the embedded Redis, its append-only file and generated keys.",
    )
    redis_url: SecretStr | None = Field(
        None,
        description=(
            "Redis server every role uses (redis://, rediss://, unix://). "
            "Unset: `serve` starts an embedded Redis in the data directory."
        ),
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port the HTTP server listens on.")
    secret_key: SecretStr | None = Field(
        None,
        description=(
            "Key that encrypts camera passwords (44 characters, urlsafe base64 of 32 bytes; "
            "generate with `kitchencam gen-key`). Unset: generated into the data directory."
        ),
    )
    allow_networks: list[Network] = Field(
        default_factory=list,
        description=(
            "Comma-separated networks cameras may be in although the address policy refuses "
            "them by default (loopback, private, link-local, CGNAT...), e.g. `192.168.10.0/24`."
        ),
    )
    max_body_bytes: int = Field(
        65536, ge=1024, le=16 * 1024 * 1024, description="Largest request body accepted."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every role."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    instance: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Name of this process in Redis and logs (default: host name and pid).",
    )

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from kitchencam.secretbox import check_key

            check_key(value.get_secret_value())
        return value


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read and validate settings from ``environ`` (default: the process environment).

    Raises ``SettingsError`` naming each bad variable and what it allows.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {
        name.removeprefix(ENV_PREFIX).lower(): value
        for name, value in env.items()
        if name.startswith(ENV_PREFIX)
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = set(Settings.model_fields)
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        names = ", ".join(ENV_PREFIX + k.upper() for k in unknown)
        raise SettingsError(
            f"unknown setting {names}; known settings: "
            + ", ".join(ENV_PREFIX + k.upper() for k in sorted(known))
        )
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        raise SettingsError(describe_errors(err)) from None


def describe_errors(err: ValidationError) -> str:
    """One line per bad setting: its variable name, the bad value's problem, and what is allowed."""
    lines = []
    seen = set()
    for error in err.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        if field in seen:
            continue
        seen.add(field)
        variable = ENV_PREFIX + field.upper()
        info = Settings.model_fields.get(field)
        allowed = f" ({info.description})" if info is not None and info.description else ""
        lines.append(f"{variable}: {error['msg']}{allowed}")
    return "invalid settings:\n  " + "\n  ".join(lines)
