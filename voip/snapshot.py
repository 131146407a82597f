"""Ordering for the in-memory snapshots the call path reads (accounts, plan, features).

Each snapshot is read from the database in one query and swapped in whole, by a
periodic task and on demand (after an edit). Without ordering, a periodic reload
whose read began before an edit was committed could finish *after* the reload (or
local write) that follows the edit and swap the old rows back in: the exchange then
used stale data (an extension just raised to "national" was refused as internal-only)
until the next period. :class:`SnapshotGuard` serialises reloads and local writes, so
each one reads after the previous one was applied and a snapshot never goes back in
time; its generation lets a read-through lookup see that a newer snapshot was
applied while it waited, and not cache what it read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SnapshotGuard:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.generation = 0  # bumped each time a reload or a local write is applied

    @asynccontextmanager
    async def applying(self) -> AsyncIterator[None]:
        """Hold for a whole reload (read and swap) or for a local write's swap.

        A local write commits first and then swaps inside this block: a reload that
        read before the commit is applied before the write's swap, never after it.
        """
        async with self._lock:
            yield
            self.generation += 1
