"""Call-detail records, written in batches by one background task.

The call path only appends a row to a list; a writer inserts whatever has piled
up every half second (or at once when a batch is full), so a slow database never
delays call setup or teardown. Rows that fail to insert are kept for the next
try (bounded), and everything left is flushed at shutdown.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import insert

from core.db import Database
from voip.models import CallRecord

log = structlog.get_logger("voip.cdr")

BATCH = 500
INTERVAL = 0.5
MAX_PENDING = 100_000


class CdrWriter:
    def __init__(self, db: Database, *, interval: float = INTERVAL) -> None:
        self._db = db
        self._interval = interval
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self.written = 0

    def add(self, **row: Any) -> None:
        if len(self._pending) >= MAX_PENDING:
            log.error("cdr.dropped", call_id=row.get("call_id"), reason="backlog full")
            return
        self._pending.append(row)
        if len(self._pending) >= BATCH:
            self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            rows, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                async with self._db.session() as session:
                    await session.execute(insert(CallRecord), rows)
            except Exception:
                log.exception("cdr.write_failed", rows=len(rows))
                self._pending = rows + self._pending
                return
            self.written += len(rows)
