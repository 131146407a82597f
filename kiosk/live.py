"""Live pushes to connected kiosks: alerts, their clearing, reload, new content.

Each node keeps the WebSockets of the kiosks connected to it. A change is published
on the bus as :class:`KioskPush`; every node (this one included) forwards it to its
own matching connections, so a kiosk connected to any node gets it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog
from aiohttp import web

from core.bus import Bus, Event
from kiosk.rules import Placement, Target

log = structlog.get_logger("kiosk")


class KioskPush(Event):
    topic: ClassVar[str] = "kiosk.push"

    kind: str  # "alert", "alert_cleared", "reload", "content"
    alert: dict[str, Any] | None = None
    target: dict[str, list[str]] = {}
    kiosk_ids: list[int] | None = None  # None: every kiosk the target reaches


@dataclass(eq=False)
class Connection:
    kiosk_id: int
    place: Placement
    socket: web.WebSocketResponse


@dataclass
class LiveHub:
    bus: Bus
    connections: set[Connection] = field(default_factory=set)

    async def start(self) -> None:
        await self.bus.subscribe(KioskPush, self.deliver)

    async def publish(self, push: KioskPush) -> None:
        await self.bus.publish(push)

    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)

    def connected_ids(self) -> set[int]:
        return {c.kiosk_id for c in self.connections}

    async def deliver(self, push: KioskPush) -> None:
        target = Target(
            frozenset(push.target.get("groups", ())),
            frozenset(push.target.get("districts", ())),
            frozenset(push.target.get("streets", ())),
        )
        message = json.dumps({"type": push.kind, "alert": push.alert}, ensure_ascii=False)
        chosen = [
            c
            for c in self.connections
            if (push.kiosk_ids is None or c.kiosk_id in push.kiosk_ids) and target.reaches(c.place)
        ]
        # At once to all: one slow socket must not hold back the others.
        results = await asyncio.gather(
            *(c.socket.send_str(message) for c in chosen), return_exceptions=True
        )
        failed = sum(1 for r in results if isinstance(r, BaseException))
        log.info("kiosk.pushed", kind=push.kind, kiosks=len(chosen), failed=failed)
