"""Where the exchange may send webhooks: URL rules, address rules, and the pinned connection.

A webhook URL is chosen by a subscriber, so every POST is a request the gateway makes on an
outsider's behalf from inside the government network (SSRF). Two checks guard it:

- :func:`check_url` when the subscription is created: syntax (http(s), no userinfo, no
  whitespace or control characters, a valid host and port), and IP literals against the
  address rules — a clear 422 early.
- :func:`resolve_target` at every delivery: the host is resolved once, *every* address is
  checked, and the POST goes to the checked address (Host and TLS SNI keep the name), so a
  DNS answer that changes between check and connect (rebinding) cannot redirect it.

Refused unless the operator allow-lists them (``EXCHANGE_WEBHOOK_ALLOWED_NETWORKS``):
loopback (unless the local-development switch ``EXCHANGE_WEBHOOK_ALLOW_LOOPBACK``), private
(RFC 1918, RFC 4193), link-local, multicast, unspecified, reserved, CGNAT, cloud metadata,
and any other address that is not globally routable; IPv4 embedded in IPv6 is judged as IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from exchange.errors import ConfigurationError, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0
# Instance-metadata services; some sit in public or CGNAT space, so listed by address.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure wire server (public address space)
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class RefusedTarget(InvalidInput):
    """The webhook URL or one of its addresses is not a place the exchange sends data."""

    code = "webhook_url_refused"


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's settings; the defaults refuse everything but public addresses."""

    allow_loopback: bool = False  # local development only
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # if set, host names must equal or sit under one

    @classmethod
    def from_settings(
        cls,
        *,
        allow_loopback: bool,
        allowed_networks: Sequence[str] | None,
        allowed_hosts: Sequence[str] | None,
    ) -> EgressPolicy:
        try:
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks or ())
        except ValueError as exc:
            raise ConfigurationError(f"webhook_allowed_networks: {exc}") from None
        hosts = tuple(h.lower().strip(".") for h in allowed_hosts or () if h.strip("."))
        return cls(allow_loopback, nets, hosts)


@dataclass(frozen=True)
class Target:
    """A checked URL: what to connect to is decided at delivery by :func:`resolve_target`."""

    url: str
    scheme: str
    host: str  # lower case; IPv6 without brackets
    port: int
    literal: IPAddress | None = field(default=None)  # the host, if it is an address

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def check_url(url: str, policy: EgressPolicy) -> Target:
    """The syntactic rules, and the address rules when the host is an address literal."""
    target = _parse(url)
    lit = target.literal
    local = (lit is not None and _unmapped(lit).is_loopback) or _is_localhost(target.host)
    if lit is not None and (reason := refusal(lit, policy)):
        raise RefusedTarget(f"webhook address refused: {reason}")
    if local and not policy.allow_loopback:
        raise RefusedTarget("webhook address refused: loopback")
    if policy.allowed_hosts and not local:
        listed = any(lit in n for n in policy.allowed_networks) if lit is not None else False
        if not (listed or _host_allowed(target.host, policy.allowed_hosts)):
            raise RefusedTarget("webhook host is not on the exchange's allow-list")
    if target.scheme != "https" and not local:
        raise RefusedTarget("webhook URL must be https (plain http only to loopback)")
    return target


def refusal(ip: IPAddress, policy: EgressPolicy) -> str | None:
    """Why ``ip`` is refused (a short category, safe to show), or None if allowed."""
    plain = _unmapped(ip)
    if any(ip in n or plain in n for n in policy.allowed_networks):
        return None
    if plain.is_loopback:
        return None if policy.allow_loopback else "loopback"
    if plain in METADATA or ip in METADATA:
        return "metadata"
    if plain.is_unspecified:
        return "unspecified"
    if plain.is_multicast:
        return "multicast"
    if plain.is_link_local:
        return "link-local"
    if isinstance(plain, ipaddress.IPv4Address) and plain in _CGNAT:
        return "shared address space"
    if plain.is_reserved:
        return "reserved"
    if plain.is_private:
        return "private"
    if not plain.is_global:  # documentation, benchmarking, ... ranges
        return "reserved"
    return None


async def resolve_target(
    target: Target, policy: EgressPolicy, resolver: Resolver
) -> list[IPAddress]:
    """Resolve once; refuse if *any* address is refused; the addresses to connect to."""
    if target.literal is not None:
        addresses = [target.literal]
    else:
        addresses = await resolver(target.host, target.port)
    if not addresses:
        raise OSError("no address")
    for ip in addresses:
        if refusal(ip, policy):
            raise RefusedTarget("webhook address refused")
    return addresses


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The system resolver (in a worker thread, with a deadline)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    out: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 zone id
        if ip not in out:
            out.append(ip)
    return out


def _parse(url: str) -> Target:
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"webhook URL longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise RefusedTarget(
            "webhook URL must be ASCII without spaces or control characters "
            "(percent-encode paths, punycode host names)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedTarget("webhook URL is malformed or its port is out of range") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedTarget("webhook URL must be http(s)")
    if "@" in parts.netloc:
        raise RefusedTarget("webhook URL must not carry user information")
    host = (parts.hostname or "").lower()
    literal = _literal(host, parts)
    if literal is None and not _valid_name(host):
        raise RefusedTarget("webhook URL needs a valid host name or address")
    if port == 0:
        raise RefusedTarget("webhook port must be 1-65535")
    default = 443 if parts.scheme == "https" else 80
    return Target(url, parts.scheme, host, port or default, literal)


def _literal(host: str, parts: SplitResult) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if "[" in parts.netloc:
        raise RefusedTarget("webhook URL has an invalid IPv6 address")
    if host and all(c in "0123456789abcdefx." for c in host):
        # inet_aton forms the resolver would accept: 2130706433, 0x7f.1, 127.1
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _valid_name(host: str) -> bool:
    labels = host.removesuffix(".").split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(x) for x in labels):
        return False
    return not labels[-1].isdigit()  # no all-numeric top-level label


def _unmapped(ip: IPAddress) -> IPAddress:
    """IPv4 carried in IPv6 (mapped, NAT64, 6to4) is judged as the IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def _is_localhost(host: str) -> bool:
    name = host.removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    return any(host == a or host.endswith("." + a) for a in allowed)
