"""Which address a request came from, given the proxies we trust."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[IPNetwork]
) -> bool:
    return any(address in network for network in proxies)


def client_ip(peer: str | None, forwarded_for: str | None, proxies: Sequence[IPNetwork]) -> str:
    """The client address: ``X-Forwarded-For`` counts only when the peer is a trusted
    proxy, and is walked from the right so a client cannot forge its way in by
    prepending addresses."""
    peer_address = _parse(peer or "")
    if peer_address is None:
        return peer or "unknown"
    if not forwarded_for or not _trusted(peer_address, proxies):
        return str(peer_address)
    hops = [_parse(part) for part in forwarded_for.split(",")]
    for hop in reversed(hops):
        if hop is None:
            break  # garbage in the chain: stop at the last address we could trust
        if not _trusted(hop, proxies):
            return str(hop)
        peer_address = hop
    return str(peer_address)
