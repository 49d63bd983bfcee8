"""The address a request came from, trusting ``X-Forwarded-For`` from configured proxies only.

A request that reaches the server from one of ``TRUSTED_PROXIES`` (addresses or networks) is
attributed to the nearest address in its ``X-Forwarded-For`` that is not itself a trusted proxy
(the header is read from the right, since a client can write anything at its left end). From
any other peer the header is ignored: the peer's own address counts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    """Resolves a peer address and its X-Forwarded-For header to the client's address."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The client's address ("unknown" when the peer is not known).

        ``forwarded_for``: every X-Forwarded-For line of the request, in order (a proxy may
        add a line of its own rather than extend the first).
        """
        if not peer:
            return "unknown"
        hops = [h.strip() for line in forwarded_for for h in line.split(",") if h.strip()]
        if not hops or not self._is_trusted(peer):
            return peer
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return peer
