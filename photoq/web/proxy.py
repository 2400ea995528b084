"""Behind a TLS-terminating reverse proxy: the client's address and scheme from X-Forwarded-For and
X-Forwarded-Proto, believed only when the direct peer is one of `[server] trusted_proxies`.

X-Forwarded-For is read from the right: each proxy appends the address it was connected from, so the entries a
trusted proxy added are on the right, and everything left of them was written by whoever connected to that proxy,
i.e. possibly by the client itself. The client is therefore the right-most address that is not a trusted proxy; the
left-most is whatever the client chose to send, and believing it would let anyone pick their own rate-limit bucket.

The RFC 7239 `Forwarded` header is not read: proxies that set one of the two kinds usually pass the other on from
the client untouched, so reading both would let a client speak through the one its proxy does not manage.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import TypedDict

from aiohttp import web

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

SCHEMES = ("http", "https")

# The client address the proxy reported. The access log needs it on the request as aiohttp created it: the
# middleware hands a clone (with the client's remote and scheme) down to the handlers, but the log sees the original.
FORWARDED_CLIENT = web.RequestKey("forwarded_client", str)


def parse_address(text: str | None) -> Address | None:
    """A bare IPv4 or IPv6 address, else None (ports, brackets, "unknown" and obfuscated names are not addresses)."""
    if not text:
        return None
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped:  # a dual-stack socket's "::ffff:10.0.0.1"
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def header_list(request: web.BaseRequest, name: str) -> list[str]:
    """A comma-separated header's entries, over all its lines in order (as if they were one line)."""
    return [item for line in request.headers.getall(name, ()) for item in line.split(",")]


def client_hop(chain: list[str], trusted: Sequence[Network]) -> tuple[int, Address] | None:
    """The index and address of the client in an X-Forwarded-For chain: the right-most entry that is not a trusted
    proxy. None when an entry up to it is not an address: the chain cannot be followed past it."""
    for index in range(len(chain) - 1, -1, -1):
        address = parse_address(chain[index])
        if address is None:
            return None
        if not is_trusted(address, trusted) or index == 0:  # all trusted: it started at the left-most proxy
            return index, address
    return None


def forwarded_scheme(values: list[str], hop: int | None, chain_length: int) -> str | None:
    """The scheme the client used. A single value (most proxies overwrite the header) is taken as it is; when every
    proxy appended one beside its X-Forwarded-For entry, the one that belongs to the client's hop."""
    if not values:
        return None
    value = values[hop] if hop is not None and len(values) == chain_length else values[-1]
    value = value.strip().lower()
    return value if value in SCHEMES else None


class ForwardedChanges(TypedDict, total=False):
    """The arguments for request.clone() that a trusted proxy's headers give."""
    remote: str
    scheme: str


def forwarded_changes(request: web.BaseRequest, trusted: Sequence[Network]) -> ForwardedChanges:
    """What the proxy says about the client, as arguments for request.clone(); empty for an untrusted peer."""
    changes: ForwardedChanges = {}
    peer = parse_address(request.remote)
    if peer is None or not is_trusted(peer, trusted):
        return changes
    chain = header_list(request, "X-Forwarded-For")
    found = client_hop(chain, trusted) if chain else None
    if found is not None:
        changes["remote"] = str(found[1])
    scheme = forwarded_scheme(header_list(request, "X-Forwarded-Proto"), found[0] if found else None, len(chain))
    if scheme is not None:
        changes["scheme"] = scheme
    return changes


def proxy_headers_middleware(trusted: Sequence[Network]):
    """Outermost of all, so that every later middleware, handler and the access log see the real client. Installed
    only when some proxy is trusted."""

    @web.middleware
    async def proxy_headers(request: web.Request, handler):
        changes = forwarded_changes(request, trusted)
        if not changes:
            return await handler(request)
        if "remote" in changes:
            request[FORWARDED_CLIENT] = changes["remote"]
        return await handler(request.clone(**changes))

    return proxy_headers


def client_address(request: web.BaseRequest) -> str | None:
    """The client's address for logging: the one a trusted proxy reported, else the peer's."""
    return request.get(FORWARDED_CLIENT, request.remote)
