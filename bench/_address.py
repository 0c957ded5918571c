"""HOST:PORT parsing that refuses anything but loopback.

The benchmark floods its target with requests and serves without auth; keeping both ends
on 127.0.0.1 means a typo cannot load-test someone else's server or expose the floor.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost"})


class NotLoopbackError(ValueError):
    """The address names a host other than this machine's loopback."""


def require_loopback(address: str) -> str:
    """Return ``address`` unchanged if its host is loopback, else raise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise NotLoopbackError(f"got address {address!r}, expected HOST:PORT")
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return address
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotLoopbackError(f"got host {host!r}, expected a loopback address such as 127.0.0.1")
    return address
