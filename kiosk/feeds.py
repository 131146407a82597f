"""Built feeds, cached per place (a group, or the portal's "no group"), answered by ETag.

A feed is built from every item, playlist and alert: too much to read for each of
thousands of kiosks that ask every few minutes, and all of them ask at once after a
content push. Each node keeps the feed it built for each placement until:

- something it is made of changes: this node's writes call :meth:`FeedCache.changed`,
  which clears the cache here and publishes :class:`FeedChanged` on the bus, so every
  other node clears its own (published before the kiosks are told to sync, and the bus
  delivers a node's messages in order, so no node answers a pushed kiosk from the old
  cache);
- the feed itself says it changes (``Feed.valid_until``: the next hour, an alert's
  expiry);
- ``MAX_AGE`` passed: a backstop for a bus message lost to a Redis reconnect, or a
  change written by the command line without a running server to tell.

Concurrent misses for one place share one build; a build that began before a change
is not kept (its reader had asked before the change, so it may still have it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import ClassVar
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import Counter

from core.bus import Event
from core.context import AppContext
from core.db import utcnow
from kiosk import rules, service
from kiosk.rules import Placement

log = structlog.get_logger("kiosk")

MAX_AGE = dt.timedelta(minutes=5)


class FeedChanged(Event):
    """Content, playlists, schedules, groups or alerts changed: drop the cached feeds."""

    topic: ClassVar[str] = "kiosk.feed_changed"

    reason: str = ""


@dataclass
class _Cached:
    feed: rules.Feed
    until: dt.datetime


@dataclass
class FeedCache:
    ctx: AppContext
    zone: ZoneInfo
    max_age: dt.timedelta = MAX_AGE
    generation: int = 0
    _entries: dict[Placement, _Cached] = field(default_factory=dict)
    _building: dict[Placement, tuple[int, asyncio.Task[rules.Feed]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lookups = Counter(
            "unicomm_kiosk_feed_lookups",
            "Kiosk and portal feed lookups, by whether the cached feed served",
            ["result"],
            registry=self.ctx.metrics,
        )
        self._hit = self._lookups.labels("hit")
        self._miss = self._lookups.labels("miss")
        self.builds = Counter(
            "unicomm_kiosk_feed_builds", "Feeds built from the database", registry=self.ctx.metrics
        )

    async def start(self) -> None:
        await self.ctx.bus.subscribe(FeedChanged, self._heard)

    async def _heard(self, event: FeedChanged) -> None:
        self.invalidate()

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()

    async def changed(self, reason: str) -> None:
        """After a committed change: clear here at once, and on every node through the bus."""
        self.invalidate()
        await self.ctx.bus.publish(FeedChanged(reason=reason))

    async def get(self, place: Placement) -> rules.Feed:
        now = utcnow()
        cached = self._entries.get(place)
        if cached is not None and now < cached.until:
            self._hit.inc()
            return cached.feed
        self._miss.inc()
        building = self._building.get(place)
        if building is None or building[0] != self.generation:
            task = asyncio.get_running_loop().create_task(self._build(place, self.generation))
            building = self._building[place] = (self.generation, task)
        # Shielded: a kiosk that hangs up must not cancel the build the others wait for.
        return await asyncio.shield(building[1])

    async def _build(self, place: Placement, generation: int) -> rules.Feed:
        try:
            now = utcnow()
            async with self.ctx.db.session() as session:
                feed = await service.build_feed(session, place, now, self.zone)
            self.builds.inc()
            if generation == self.generation:
                self._entries[place] = _Cached(feed, min(feed.valid_until, now + self.max_age))
            return feed
        finally:
            if self._building.get(place, (None,))[0] == generation:
                del self._building[place]


__all__ = ["MAX_AGE", "FeedCache", "FeedChanged"]
