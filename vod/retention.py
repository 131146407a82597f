"""Which items go, sans-I/O: expiry after broadcast, and oldest-first to free disk.

The sweeper (:mod:`vod.service`) gathers facts (items, what is busy, disk usage,
the time) and asks these functions; they decide without touching a file, a row
or a clock, so the rules are tested with plain values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    item_id: int
    key: str
    broadcast_at: dt.datetime
    expires_at: dt.datetime
    size_bytes: int


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    free_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 100.0


def expires_at(broadcast_at: dt.datetime, retention_days: int) -> dt.datetime:
    return broadcast_at + dt.timedelta(days=retention_days)


def expired(
    items: Iterable[Candidate], now: dt.datetime, busy: Collection[str] = ()
) -> list[Candidate]:
    """Items past their expiry, except those being played right now (they go next sweep)."""
    return [item for item in items if item.expires_at <= now and item.key not in busy]


def to_free_disk(
    items: Iterable[Candidate],
    disk: DiskUsage,
    watermark_percent: float,
    busy: Collection[str] = (),
) -> list[Candidate]:
    """Oldest broadcasts first, until free space would be back above the watermark."""
    if watermark_percent <= 0 or disk.free_percent >= watermark_percent:
        return []
    needed = int(disk.total_bytes * watermark_percent / 100.0) - disk.free_bytes
    chosen: list[Candidate] = []
    for item in sorted(items, key=lambda c: (c.broadcast_at, c.item_id)):
        if needed <= 0:
            break
        if item.key in busy:
            continue
        chosen.append(item)
        needed -= item.size_bytes
    return chosen
