"""An append-only list of events a test peer reported, with waiting on a condition."""

# Waits take a `timeout` argument (ASYNC109) on purpose: on expiry they fail with what
# was awaited and the peer's log, which a bare asyncio.timeout() cannot say.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


class PeerFailed(AssertionError):
    """A peer did not do what the test expected; the message carries its log's tail."""


class EventLog:
    def __init__(self, describe: Callable[[], str]) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._closed = False
        self._describe = describe  # gives the peer's log tail for failure messages

    def append(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    def mark(self) -> int:
        """A position: waiting from here ignores what happened before."""
        return len(self.events)

    def find(self, match: Callable[[Event], bool], since: int = 0) -> Event | None:
        return next((event for event in self.events[since:] if match(event)), None)

    async def wait(
        self, match: Callable[[Event], bool], timeout: float, what: str, since: int = 0
    ) -> Event:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.find(match, since)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if self._closed or remaining <= 0:
                ended = "the peer exited" if self._closed else f"{timeout:g} s passed"
                recent = "\n".join(str(event) for event in self.events[-10:])
                raise PeerFailed(
                    f"waited for {what} but {ended}.\nlast events:\n{recent}\n{self._describe()}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
