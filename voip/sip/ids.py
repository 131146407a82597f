"""Generation of the random identifiers SIP needs: branches, tags, Call-IDs."""

from __future__ import annotations

import os

MAGIC_COOKIE = "z9hG4bK"

# The same randomness as secrets.token_hex (os.urandom), drawn 4 KiB at a time: a call
# needs a dozen identifiers and one system call each showed on the call path.
_pool = b""


def _token_hex(size: int) -> str:
    global _pool
    if len(_pool) < size:
        _pool = os.urandom(4096)
    chunk, _pool = _pool[:size], _pool[size:]
    return chunk.hex()


def _forget_pool() -> None:
    global _pool
    _pool = b""  # a forked child must not repeat its parent's identifiers


os.register_at_fork(after_in_child=_forget_pool)


def new_branch() -> str:
    """A Via branch carrying the RFC 3261 magic cookie, unique in space and time."""
    return MAGIC_COOKIE + _token_hex(10)


def new_tag() -> str:
    return _token_hex(8)


def new_call_id(host: str | None = None) -> str:
    local = _token_hex(12)
    return local if host is None else f"{local}@{host}"
