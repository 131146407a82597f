"""Live calls in the shared state (hash ``voip:calls``), for ``GET /api/voip/calls``.

Writes go through one queue and one task: the call path never waits on Redis,
and a call's "answered" update can never overtake its creation or its removal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from core.state import SharedState

log = structlog.get_logger("voip.calls")

KEY = "voip:calls"


class LiveCalls:
    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._queue: asyncio.Queue[tuple[str, str, str | None]] = asyncio.Queue()

    def put(self, call_id: str, record: dict[str, Any]) -> None:
        self._queue.put_nowait(("set", call_id, json.dumps(record, ensure_ascii=False)))

    def remove(self, call_id: str) -> None:
        self._queue.put_nowait(("del", call_id, None))

    async def run(self) -> None:
        while True:
            op, call_id, value = await self._queue.get()
            try:
                if op == "set" and value is not None:
                    await self._state.hset(KEY, call_id, value)
                else:
                    await self._state.hdel(KEY, call_id)
            except Exception:
                log.exception("calls.state_failed", call_id=call_id)

    async def drain(self) -> None:
        """Wait (briefly) until what was queued has reached the shared state."""
        for _ in range(100):
            if self._queue.empty():
                return
            await asyncio.sleep(0.01)
