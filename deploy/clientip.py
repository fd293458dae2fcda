"""The client's address, believing forwarded headers only from trusted peers.

Pure logic: the TCP peer is the client unless it is a configured trusted
proxy (the edge, or a load balancer in front of it); then the right-most
``X-Forwarded-For`` address that is not itself trusted is the client.  This
is the standard right-to-left walk: everything left of the first untrusted
hop could have been written by the client and is ignored.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """Parse ``127.0.0.1``, ``10.0.0.0/8`` or ``::1`` into networks (ValueError if bad)."""
    nets = []
    for spec in specs:
        spec = spec.strip()
        if spec:
            nets.append(ipaddress.ip_network(spec, strict=False))
    return tuple(nets)


def _address(text: str):
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    addr = _address(address)
    if addr is None:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in trusted)


def client_ip(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address for a request from ``peer`` with these XFF header values.

    ``forwarded_for`` is every ``X-Forwarded-For`` header value in order
    (repeated headers are one list, per RFC 9110).  Malformed entries stop
    the walk: the last well-formed hop seen is the answer.
    """
    if not trusted or not is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            break
        client = str(addr)
        if not is_trusted(client, trusted):
            break
    return client
