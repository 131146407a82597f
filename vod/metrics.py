"""Prometheus metrics of news on demand, on the server's ``/metrics``.

Two kinds:

- counted by this node as it works (counters and a histogram): transcodes finished and
  their wall-clock seconds, media seconds transcoded, playlist and segment requests and
  the bytes they served, views;
- read from the database, so every node reports the cluster's truth (gauges): jobs by
  state, catalogue items, bytes stored. A scrape cannot wait for the database, so these
  are refreshed in the background every ``REFRESH_SECONDS`` and at once after this
  node changes them (:meth:`VodMetrics.nudge`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select

from core.db import Database
from vod.models import Item, Job, JobState

log = structlog.get_logger("vod")

REFRESH_SECONDS = 15.0
SEGMENT_SUFFIXES = (".ts", ".m4s", ".aac", ".mp4")
# Transcodes of a news programme take seconds to tens of minutes.
TRANSCODE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def media_kind(path: str) -> str:
    """What a media request asks for: ``playlist``, ``segment`` or ``image`` (poster, thumbs)."""
    if path.endswith(".m3u8"):
        return "playlist"
    if path.endswith(SEGMENT_SUFFIXES):
        return "segment"
    return "image"


class VodMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge(
            "unicomm_vod_jobs",
            "Transcode jobs by state (cluster-wide)",
            ["state"],
            registry=registry,
        )
        self.items = Gauge(
            "unicomm_vod_items", "Programmes in the catalogue (cluster-wide)", registry=registry
        )
        self.stored = Gauge(
            "unicomm_vod_stored_bytes",
            "Bytes of the catalogue's programme files (cluster-wide)",
            registry=registry,
        )
        self.transcodes = Counter(
            "unicomm_vod_transcodes",
            "Transcodes finished on this node, by result",
            ["result"],
            registry=registry,
        )
        self.transcode_seconds = Histogram(
            "unicomm_vod_transcode_seconds",
            "Wall-clock seconds of the transcodes finished on this node",
            ["result"],
            buckets=TRANSCODE_BUCKETS,
            registry=registry,
        )
        self.media_seconds = Counter(
            "unicomm_vod_transcoded_media_seconds",
            "Seconds of programme transcoded on this node",
            registry=registry,
        )
        self.requests = Counter(
            "unicomm_vod_media_requests",
            "Media requests served, by kind (playlist, segment, image) and access",
            ["kind", "access"],
            registry=registry,
        )
        self.bytes_served = Counter(
            "unicomm_vod_media_bytes",
            "Bytes of media bodies served, by kind (a 304 or a HEAD sends none)",
            ["kind"],
            registry=registry,
        )
        self.views = Counter(
            "unicomm_vod_views", "Programme views counted on this node", registry=registry
        )
        self._nudged = asyncio.Event()
        self._served: dict[tuple[str, bool], tuple[Any, Any]] = {}

    # ---- counted as it happens

    def transcoded(self, result: str, seconds: float, media_seconds: float = 0.0) -> None:
        self.transcodes.labels(result).inc()
        self.transcode_seconds.labels(result).observe(seconds)
        if media_seconds > 0:
            self.media_seconds.inc(media_seconds)

    def served(self, path: str, size: int, *, public: bool) -> None:
        """A media request answered with ``size`` bytes of body (0 for a 304 or a HEAD)."""
        kind = media_kind(path)
        counters = self._served.get((kind, public))
        if counters is None:
            # labels() takes a lock and builds a key each time: bound once per kind/access.
            access = "signed" if public else "staff"
            counters = (self.requests.labels(kind, access), self.bytes_served.labels(kind))
            self._served[kind, public] = counters
        counters[0].inc()
        counters[1].inc(size)

    def viewed(self) -> None:
        self.views.inc()

    # ---- read from the database

    def nudge(self) -> None:
        """This node changed jobs or items: refresh the gauges now, not at the next period."""
        self._nudged.set()

    async def refresh(self, db: Database) -> None:
        async with db.session() as session:
            rows = await session.execute(select(Job.state, func.count(Job.id)).group_by(Job.state))
            by_state = {state: count for state, count in rows}
            items, stored = (
                await session.execute(
                    select(func.count(Item.id), func.coalesce(func.sum(Item.size_bytes), 0))
                )
            ).one()
        for state in JobState:
            self.jobs.labels(state.value).set(by_state.get(state, 0))
        self.items.set(items)
        self.stored.set(stored)

    async def run(self, db: Database) -> None:
        """The background refresh: every period, and soon after a nudge."""
        while True:
            self._nudged.clear()
            try:
                await self.refresh(db)
            except Exception:
                # The database is away: the gauges keep their last values until it is back.
                log.warning("vod.metrics.refresh_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), REFRESH_SECONDS)
