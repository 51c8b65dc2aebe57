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
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 (names them; binds nothing)


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
            "Redis server every role uses (redis://, rediss://, unix://, or "
            "redis+sentinel://[:password@]host:port[,host:port]/service[/db]; Redis Cluster is "
            "not supported). Unset: `serve` starts an embedded Redis in the data directory."
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
    ice_servers: list[str] = Field(
        default_factory=list,
        description=(
            "Comma-separated STUN/TURN URLs offered to viewers, e.g. "
            "`stun:stun.example.com:3478,turn:turn.example.com:3478?transport=udp`. "
            "Empty: none (no public STUN server is ever used)."
        ),
    )
    turn_username: str | None = Field(None, description="User name for the TURN servers.")
    turn_password: SecretStr | None = Field(
        None, description="Password for the TURN servers (sent to viewers in WHEP Link headers)."
    )
    webrtc_addresses: list[IPAddress] = Field(
        default_factory=list,
        description=(
            "Comma-separated local IP addresses relays offer to viewers as ICE host candidates. "
            "Empty: every address of the machine but loopback."
        ),
    )
    max_viewers_per_camera: int = Field(
        100, ge=1, le=100_000, description="Viewers one camera may have on one relay."
    )
    max_viewers: int = Field(
        300, ge=1, le=100_000, description="Viewers one relay process may serve in all."
    )
    whep_rate_per_min: int = Field(
        60,
        ge=0,
        le=100_000,
        description=(
            "Viewers one client address may start per minute on one web process (WHEP POSTs; "
            "more: 429 with Retry-After). 0: no limit."
        ),
    )
    relay_workers: int | None = Field(
        None,
        ge=0,
        le=256,
        description=(
            "Relay worker processes `serve` starts (unset: one per CPU core; 0: the relay "
            "role runs inside the serve process)."
        ),
    )
    sample_interval_s: float = Field(
        2.0,
        ge=0.5,
        le=60.0,
        description=(
            "Seconds between two analysed keyframes of a camera: at most one keyframe per "
            "interval is decoded for the compliance checks."
        ),
    )
    analysis_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="Threads of a relay's shared pool that decode and analyse sampled keyframes.",
    )
    event_retention_days: int = Field(
        90,
        ge=31,
        le=3650,
        description=(
            "Days compliance events and their evidence snapshots are kept (at least 31, "
            "for the 30-day uptime)."
        ),
    )
    webhook_allow_networks: list[Network] = Field(
        default_factory=list,
        description=(
            "Comma-separated networks webhook URLs may point into although the address policy "
            "refuses them by default (loopback, private...)."
        ),
    )
    webhook_retry_s: float = Field(
        3600.0,
        ge=0.0,
        le=7 * 86400.0,
        description="How long a failing webhook delivery is retried, with back-off (seconds).",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0.0, le=120.0, description="Time limit of one webhook POST (seconds)."
    )
    trust_proxy: bool = Field(
        False,
        description=(
            "Trust the X-Forwarded-Proto and X-Forwarded-For headers of a reverse proxy in "
            "front of every web process (secure cookies, sign-in rate limits per client address)."
        ),
    )
    demo: bool = Field(
        False,
        description=(
            "Serve demo cameras: addresses on the reserved `demo.invalid` domain "
            "(`rtsp://NAME.demo.invalid/live`) play a simulated kitchen generated in-process. "
            "Set by `kitchencam serve --demo`; leave off in production."
        ),
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?$",
        description=(
            "The address consumers reach KitchenCam at, e.g. `https://kitchens.example.com`, "
            "used in the watch pages' QR codes. Unset: taken from each request's Host header."
        ),
    )
    instance: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Name of this process in Redis and logs (default: host name and pid).",
    )
    relay_capacity: int = Field(
        100,
        ge=1,
        le=100_000,
        description=(
            "Cameras one relay process pulls at most. A 720p 2 Mbit/s camera (ingest and "
            "keyframe analysis) costs about 0.008-0.009 cores in a process of 8-16 cameras and "
            "about 0.018 at 32 (GIL contention between the ingest threads); one process tops "
            "out near one core and viewers come on top. In production run about 20 cameras "
            "per relay process and several relay processes per core."
        ),
    )
    lease_ttl_s: float = Field(
        8.0,
        ge=3.0,
        le=60.0,
        description=(
            "Seconds a relay's camera lease lasts unless renewed (renewed every third of it); "
            "a dead relay's cameras move to another relay within about this plus 4 s."
        ),
    )
    relay_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "Base URL where web processes reach this relay's WHEP signalling (default: "
            "http://HOST:PORT, with 0.0.0.0 and :: as 127.0.0.1)."
        ),
    )

    @property
    def advertised_relay_url(self) -> str:
        """The relay's advertised base URL: ``relay_url``, or one derived from host and port."""
        if self.relay_url is not None:
            return self.relay_url.rstrip("/")
        host = self.host if self.host not in WILDCARD_HOSTS else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @field_validator(
        "allow_networks", "ice_servers", "webrtc_addresses", "webhook_allow_networks", mode="before"
    )
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ice_servers")
    @classmethod
    def _ice_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(ICE_SCHEMES) or len(url) < 7:
                raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from kitchencam.redisconn import check_url

            check_url(value.get_secret_value())
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
