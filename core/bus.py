"""Publish/subscribe of typed events: in-process by default, Redis pub/sub to scale out.

Both implementations give the same guarantee: every subscriber on every node
gets each event published after it subscribed, once. Delivery is at-most-once
(pub/sub); whatever must survive a crash lives in the database, not on the bus.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

log = structlog.get_logger("bus")


class Event(BaseModel):
    """Base of every bus event; subclasses set a unique ``topic``."""

    topic: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Event]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.topic:
            raise TypeError(f"{cls.__name__} must set a topic")
        existing = Event._registry.get(cls.topic)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"topic {cls.topic!r} is already used by {existing.__name__}")
        Event._registry[cls.topic] = cls

    @classmethod
    def for_topic(cls, topic: str) -> type[Event] | None:
        return cls._registry.get(topic)


E = TypeVar("E", bound=Event)
Handler = Callable[[Any], Awaitable[None]]


@dataclass
class Subscription:
    bus: Bus
    topic: str
    handler: Handler
    active: bool = field(default=True)

    async def cancel(self) -> None:
        if self.active:
            self.active = False
            await self.bus._remove(self)


class Bus(ABC):
    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._handlers: dict[str, list[Subscription]] = defaultdict(list)

    async def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None]]
    ) -> Subscription:
        subscription = Subscription(self, event_type.topic, handler)
        first = not self._handlers[event_type.topic]
        self._handlers[event_type.topic].append(subscription)
        if first:
            await self._listen(event_type.topic)
        return subscription

    async def _remove(self, subscription: Subscription) -> None:
        handlers = self._handlers.get(subscription.topic, [])
        if subscription in handlers:
            handlers.remove(subscription)
        if not handlers:
            self._handlers.pop(subscription.topic, None)
            await self._unlisten(subscription.topic)

    async def _dispatch(self, event: Event) -> None:
        for subscription in list(self._handlers.get(event.topic, [])):
            try:
                await subscription.handler(event)
            except Exception:
                log.exception("bus.handler_failed", topic=event.topic)

    @abstractmethod
    async def publish(self, event: Event) -> None: ...

    async def _listen(self, topic: str) -> None:
        return None

    async def _unlisten(self, topic: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class InProcessBus(Bus):
    """The embedded default: handlers run as tasks on this event loop."""

    def __init__(self, node_id: str | None = None) -> None:
        super().__init__(node_id)
        self._pending: set[asyncio.Task[None]] = set()

    async def publish(self, event: Event) -> None:
        # Deliver asynchronously, like Redis would, so publishers never run
        # subscriber code inside their own critical section.
        task = asyncio.get_running_loop().create_task(self._dispatch(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class RedisBus(Bus):
    """Redis pub/sub: one channel per topic, JSON envelopes naming the origin node."""

    def __init__(self, url: str, node_id: str | None = None, namespace: str = "unicomm") -> None:
        super().__init__(node_id)
        import redis.asyncio as aioredis

        self.url = url
        self._prefix = f"{namespace}:bus:"
        self._redis = aioredis.from_url(url, decode_responses=False)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        await self._redis.ping()

    async def publish(self, event: Event) -> None:
        envelope = {
            "topic": event.topic,
            "origin": self.node_id,
            "data": event.model_dump(mode="json"),
        }
        await self._redis.publish(self._prefix + event.topic, json.dumps(envelope))

    async def _listen(self, topic: str) -> None:
        await self._pubsub.subscribe(self._prefix + topic)
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _unlisten(self, topic: str) -> None:
        await self._pubsub.unsubscribe(self._prefix + topic)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus.redis_read_failed", url=self.url)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            event = self._decode(message["data"])
            if event is not None:
                await self._dispatch(event)

    def _decode(self, raw: bytes) -> Event | None:
        try:
            envelope = json.loads(raw)
            event_type = Event.for_topic(envelope["topic"])
            if event_type is None:
                return None
            return event_type.model_validate(envelope["data"])
        except (ValueError, KeyError, TypeError, ValidationError):
            log.warning("bus.bad_envelope", size=len(raw))
            return None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
            self._reader = None
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()


def make_bus(redis_url: str, node_id: str | None = None, namespace: str = "unicomm") -> Bus:
    return RedisBus(redis_url, node_id, namespace) if redis_url else InProcessBus(node_id)
