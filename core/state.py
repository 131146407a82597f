"""Shared ephemeral state: what may be rebuilt (fast paths, presence, counters).

In memory for one node, Redis for several. Values are strings; hashes hold small
records (a registration binding, a presence entry). Everything here may vanish
on restart: the database stays the source of truth.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable


class SharedState(ABC):
    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter; its window starts at the first increment."""

    @abstractmethod
    async def hset(self, key: str, field: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def hdel(self, key: str, field: str) -> None: ...

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, str]: ...

    async def close(self) -> None:
        return None


class MemoryState(SharedState):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[str, float | None]] = {}
        self._hashes: dict[str, tuple[dict[str, str], float | None]] = {}

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _alive(self, expires: float | None) -> bool:
        return expires is None or expires > self._clock()

    async def get(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if not self._alive(entry[1]):
            del self._values[key]
            return None
        return entry[0]

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._values[key] = (value, self._expiry(ttl))

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._hashes.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        current = await self.get(key)
        if current is None:
            self._values[key] = ("1", self._expiry(ttl))
            return 1
        count = int(current) + 1
        self._values[key] = (str(count), self._values[key][1])
        return count

    async def hset(self, key: str, field: str, value: str, ttl: float | None = None) -> None:
        # In place: copying the hash (as hgetall does for its callers) made each write
        # cost as much as the hash is big (the live calls, at hundreds of calls/s).
        entry = self._hashes.get(key)
        fields = entry[0] if entry is not None and self._alive(entry[1]) else {}
        fields[field] = value
        self._hashes[key] = (fields, self._expiry(ttl))

    async def hdel(self, key: str, field: str) -> None:
        entry = self._hashes.get(key)
        if entry is not None:
            entry[0].pop(field, None)

    async def hgetall(self, key: str) -> dict[str, str]:
        entry = self._hashes.get(key)
        if entry is None:
            return {}
        if not self._alive(entry[1]):
            del self._hashes[key]
            return {}
        return dict(entry[0])


class RedisState(SharedState):
    def __init__(self, url: str, namespace: str = "unicomm") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._prefix = f"{namespace}:state:"

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(self._key(key))
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._redis.set(self._key(key), value, px=None if ttl is None else int(ttl * 1000))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._key(key))

    async def incr(self, key: str, ttl: float) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._key(key))
            pipe.pexpire(self._key(key), int(ttl * 1000), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def hset(self, key: str, field: str, value: str, ttl: float | None = None) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(key), field, value)
            if ttl is not None:
                pipe.pexpire(self._key(key), int(ttl * 1000))
            await pipe.execute()

    async def hdel(self, key: str, field: str) -> None:
        await self._redis.hdel(self._key(key), field)

    async def hgetall(self, key: str) -> dict[str, str]:
        result = await self._redis.hgetall(self._key(key))
        return {str(k): str(v) for k, v in result.items()}

    async def close(self) -> None:
        await self._redis.aclose()


def make_state(redis_url: str, namespace: str = "unicomm") -> SharedState:
    return RedisState(redis_url, namespace) if redis_url else MemoryState()
