"""Where a webhook may be sent. The URL rules are checked when an endpoint (or a callbackUrl) is saved; the address
rules at every attempt, after DNS, on every address the name resolves to, and the request then goes to an address
so checked, so a name that points somewhere private later (DNS rebinding) is refused then."""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_WEBHOOK_URL = 2000


@dataclass(frozen=True)
class Destinations:
    """The exceptions a deployment allows: networks that are not public (e.g. loopback for a receiver on this
    machine) and plain http."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_http: bool = False

    @classmethod
    def of(cls, networks: Iterable[str], allow_http: bool) -> "Destinations":
        """Raises ValueError on a network that is not a CIDR."""
        return cls(tuple(ipaddress.ip_network(network, strict=False) for network in networks), allow_http)

    def url_problem(self, url: str) -> str | None:
        """Why this URL cannot receive webhooks (None: it may, if its addresses pass at delivery time)."""
        if len(url) > MAX_WEBHOOK_URL:
            return f"The URL is longer than {MAX_WEBHOOK_URL} characters"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError on a port that is not a number in range)
        except ValueError:
            return "The URL is not valid"
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            return "The URL must use https" if not self.allow_http else "The URL must use http or https"
        if not parts.hostname:
            return "The URL has no host"
        if parts.username is not None or parts.password is not None:
            return "The URL must not carry credentials: verify the signature instead"
        if any(ord(char) < 33 for char in url):
            return "The URL must not contain spaces or control characters"
        literal = _literal_address(parts.hostname)
        if literal is not None:
            return self.address_problem(literal)
        return None

    def address_problem(self, address: IPAddress) -> str | None:
        """Why a webhook must not be sent to this address (None: it may)."""
        if isinstance(address, ipaddress.IPv6Address):
            address = _embedded_ipv4(address) or address  # ::ffff:127.0.0.1 reaches 127.0.0.1
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_unspecified:
            kind = "not a public address (it reaches this machine)"
        elif address.is_loopback:
            kind = "a loopback address"
        elif address.is_link_local:
            kind = "a link-local address (where cloud metadata services answer)"
        elif address.is_private:
            kind = "a private address"
        elif not address.is_global or address.is_multicast:
            kind = "not a public address"
        else:
            return None
        return f"Refused: {address} is {kind}"


# Prefixes whose last 32 bits are an IPv4 address that a gateway (NAT64) or the host itself may reach.
_IPV4_IN_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64, local use
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, still routed by some stacks)
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, if it embeds one (mapped, NAT64, 6to4, IPv4-compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _IPV4_IN_LAST_32_BITS) and int(address) & 0xFFFFFFFF > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
