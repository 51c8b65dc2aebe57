"""Camera stream addresses and the policy that keeps the relay away from internal services.

A camera address is parsed strictly (scheme, host, port, path; never credentials), its host is
resolved, and every resolved address must pass the policy. The relay repeats the check at
connect time and connects to the IP address that passed, never to the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"rtsp": 554, "rtsps": 322}
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PATH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


class AddressError(ValueError):
    """A camera address is malformed or refused by the policy; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class StreamAddress:
    """Where a stream is: scheme, host (a DNS name or an IP literal), port and path with query."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        """The address as a URL, without credentials."""
        return _format(self.scheme, self._host_for_url(self.host), self.port, self.path)

    def url_for(self, ip: IPAddress, username: str | None, password: str | None) -> str:
        """The URL to connect to: the checked IP in place of the name, credentials encoded."""
        userinfo = ""
        if username:
            userinfo = quote(username, safe="")
            if password:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        return _format(self.scheme, userinfo + self._host_for_url(str(ip)), self.port, self.path)

    @staticmethod
    def _host_for_url(host: str) -> str:
        return f"[{host}]" if ":" in host else host


def _format(scheme: str, netloc_host: str, port: int, path: str) -> str:
    return f"{scheme}://{netloc_host}:{port}{path}"


def parse_stream_url(url: str) -> StreamAddress:
    """Parse a camera URL strictly; ``AddressError`` says what is wrong."""
    return _parse(
        url,
        SCHEMES,
        example="rtsp://camera.example.com/live",
        wrong_scheme="use rtsp:// or rtsps://",
        credentials=(
            "put the camera's user name and password in the username and password fields, "
            "not in the address"
        ),
    )


def _parse(
    url: str, schemes: dict[str, int], *, example: str, wrong_scheme: str, credentials: str
) -> StreamAddress:
    """The strict URL rules shared by camera and webhook addresses."""
    if not isinstance(url, str) or not url:
        raise AddressError(f"give the address, e.g. {example}")
    if len(url) > MAX_URL_LENGTH:
        raise AddressError(f"the address is longer than {MAX_URL_LENGTH} characters")
    if _PATH_FORBIDDEN.search(url):
        raise AddressError("the address contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise AddressError(f"the address is not a valid URL: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        shown = parts.scheme + ":" if parts.scheme else "(none)"
        raise AddressError(f"scheme {shown} is not allowed; {wrong_scheme}")
    if "@" in parts.netloc:
        raise AddressError(credentials)
    if parts.fragment:
        raise AddressError("the address must not have a #fragment")
    host = canonical_host(parts.hostname or "")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return StreamAddress(scheme, host, port or schemes[scheme], path)


def canonical_host(host: str) -> str:
    """A DNS name (lower case) or an IP literal in canonical form; anything else is refused.

    Legacy numeric forms (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are refused rather than
    interpreted, so that no two parsers can disagree about which host is meant.
    """
    if not host:
        raise AddressError("the address has no host name")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise AddressError(f"host {host!r} is not a valid host name or IP address")
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        raise AddressError(
            f"host {host!r} looks like a numeric address in a non-standard form; "
            "write IPv4 addresses as four decimal numbers, e.g. 203.0.113.7"
        )
    return name


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refusal(ip: IPAddress, allow: Sequence[Network] = ()) -> str | None:
    """Why the policy refuses ``ip`` (``None`` if it may be connected to)."""
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = refusal(inner, allow)
            return None if why is None else f"{why} (embedded in an IPv6 address)"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_reserved:
        return "a reserved address"
    return None


class Resolver(Protocol):
    """Turns a host name into IP addresses."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to."""
        ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo), run off the event loop."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [ipaddress.ip_address(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Checks that every address a stream host resolves to is allowed."""

    allow: tuple[Network, ...] = ()
    resolver: Resolver = field(default_factory=SystemResolver)

    async def check(self, address: StreamAddress) -> IPAddress:
        """Resolve and check ``address``; return the first allowed IP to connect to."""
        try:
            ips = [ipaddress.ip_address(address.host)]
        except ValueError:
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                    ips = await self.resolver.resolve(address.host, address.port)
            except (OSError, TimeoutError) as err:
                raise AddressError(
                    f"host {address.host!r} could not be resolved; check the name"
                ) from err
        if not ips:
            raise AddressError(f"host {address.host!r} has no addresses")
        for ip in ips:
            why = refusal(ip, self.allow)
            if why is not None:
                raise AddressError(
                    f"host {address.host!r} is {why} ({ip}); cameras must be reachable on a "
                    "public address, or the operator must allow the network with "
                    "KITCHENCAM_ALLOW_NETWORKS"
                )
        return ips[0]


WEB_SCHEMES = {"http": 80, "https": 443}


def parse_web_url(url: str) -> StreamAddress:
    """Parse an ``http``/``https`` URL (a webhook) as strictly as a camera address.

    The same rules as :func:`parse_stream_url` (no credentials, canonical hosts, no control
    characters or fragments); check the result with :meth:`AddressPolicy.check` and connect
    to the IP address it returns.
    """
    return _parse(
        url,
        WEB_SCHEMES,
        example="https://example.com/kitchencam",
        wrong_scheme="use an https:// (or http://) address",
        credentials="the address must not contain a user name or password",
    )
