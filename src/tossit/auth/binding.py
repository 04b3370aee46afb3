"""Listening on a network address without authentication is refused: a
neighbour on the LAN could otherwise read, overwrite or delete everything."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for anything reachable
    from other machines (including 0.0.0.0 and ::, which mean every interface)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
