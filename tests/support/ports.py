"""Free loopback ports for test peers that cannot be told to pick their own.

SIP phones want the same number for UDP and TCP, and RTP needs a block of ports.
Blocks handed out in this process are remembered so two peers started back to
back never get the same range before either has bound it.
"""

from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()

# Below Linux's ephemeral range (32768-60999) so client sockets do not take them.
_LOW, _HIGH = 10000, 32000


def _bindable(port: int, kinds: tuple[int, ...], host: str = "127.0.0.1") -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port_block(count: int = 1, *, udp: bool = True, tcp: bool = False) -> int:
    """First port of ``count`` consecutive ports free for the asked protocols."""
    kinds = tuple(
        kind for kind, wanted in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if wanted
    )
    for _ in range(500):
        base = random.randrange(_LOW, _HIGH - count) & ~1  # RTP likes even ports
        block = range(base, base + count)
        if any(port in _handed_out for port in block):
            continue
        if all(_bindable(port, kinds) for port in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no block of {count} free ports found on loopback")


def free_sip_port() -> int:
    """A port free for both UDP and TCP."""
    return free_port_block(1, udp=True, tcp=True)
