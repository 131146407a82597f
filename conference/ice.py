"""ICE host candidates on loopback, for machines (and tests) where that is the only path.

aioice never offers 127.0.0.1 as a host candidate. With ``conference_ice_loopback``
the server adds it, so a browser on the same machine can connect through
loopback alone. It changes aioice for the whole process, which is why it is a
setting and off by default: a production SFU must not offer loopback.
"""

from __future__ import annotations

from typing import Any

import aioice.ice

_original = aioice.ice.get_host_addresses


def _with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses: list[str] = _original(use_ipv4, use_ipv6)
    if use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


def offer_loopback(enabled: bool) -> None:
    patched: Any = _with_loopback if enabled else _original
    aioice.ice.get_host_addresses = patched
