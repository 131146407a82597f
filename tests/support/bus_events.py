"""Events the bus tests exchange, importable by the test and by its peer process."""

from __future__ import annotations

from core.bus import Event


class Ping(Event):
    topic = "test.ping"
    text: str
    number: int


class Pong(Event):
    topic = "test.pong"
    text: str
    origin: str
