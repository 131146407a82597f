"""The bus: one interface, in-process and on a real Redis server, across processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from support.bus_events import Ping, Pong

from core.bus import Bus, Event, InProcessBus, RedisBus
from core.state import MemoryState, RedisState


@pytest.fixture(params=["in-process", "redis"])
async def bus(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "in-process":
        instance: Bus = InProcessBus()
    else:
        url = request.getfixturevalue("redis_server_url")
        instance = RedisBus(url, namespace=f"t{uuid.uuid4().hex[:8]}")
    await instance.start()
    yield instance
    await instance.close()


async def test_subscribers_receive_typed_events(bus: Bus) -> None:
    got: list[Ping] = []
    other: list[Ping] = []
    arrived = asyncio.Event()

    async def first(event: Ping) -> None:
        got.append(event)
        arrived.set()

    async def second(event: Ping) -> None:
        other.append(event)

    await bus.subscribe(Ping, first)
    subscription = await bus.subscribe(Ping, second)
    await asyncio.sleep(0.05)
    await bus.publish(Ping(text="会议通知", number=7))
    await asyncio.wait_for(arrived.wait(), 5)
    await asyncio.sleep(0.05)
    assert got == [Ping(text="会议通知", number=7)]
    assert isinstance(got[0], Ping)
    assert len(other) == 1

    await subscription.cancel()
    arrived.clear()
    await bus.publish(Ping(text="again", number=8))
    await asyncio.wait_for(arrived.wait(), 5)
    await asyncio.sleep(0.05)
    assert len(got) == 2 and len(other) == 1


async def test_a_failing_handler_does_not_stop_others(bus: Bus) -> None:
    delivered = asyncio.Event()

    async def broken(event: Ping) -> None:
        raise RuntimeError("boom")

    async def healthy(event: Ping) -> None:
        delivered.set()

    await bus.subscribe(Ping, broken)
    await bus.subscribe(Ping, healthy)
    await asyncio.sleep(0.05)
    await bus.publish(Ping(text="x", number=1))
    await asyncio.wait_for(delivered.wait(), 5)


def test_a_topic_belongs_to_one_event_type() -> None:
    with pytest.raises(TypeError, match="already used"):

        class Impostor(Event):
            topic = "test.ping"


SUPPORT_ROOT = Path(__file__).resolve().parent.parent
PEER = textwrap.dedent(
    """
    import asyncio, sys
    from core.bus import RedisBus
    from support.bus_events import Ping, Pong

    async def main(url, namespace):
        bus = RedisBus(url, node_id="peer", namespace=namespace)
        await bus.start()
        done = asyncio.Event()

        async def answer(event):
            await bus.publish(Pong(text=event.text.upper(), origin=bus.node_id))
            done.set()

        await bus.subscribe(Ping, answer)
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(0.2)
        await bus.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_two_processes_on_one_redis_see_each_others_events(redis_server_url: str) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PEER,
        redis_server_url,
        namespace,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SUPPORT_ROOT)},
    )
    bus = RedisBus(redis_server_url, node_id="main", namespace=namespace)
    try:
        await bus.start()
        answers: asyncio.Queue[Pong] = asyncio.Queue()

        async def collect(event: Pong) -> None:
            await answers.put(event)

        await bus.subscribe(Pong, collect)
        assert peer.stdout is not None
        assert (await asyncio.wait_for(peer.stdout.readline(), 20)).strip() == b"ready"
        await bus.publish(Ping(text="alert", number=1))
        pong = await asyncio.wait_for(answers.get(), 10)
        assert pong == Pong(text="ALERT", origin="peer")
        assert await asyncio.wait_for(peer.wait(), 20) == 0
    finally:
        if peer.returncode is None:
            peer.kill()
        await bus.close()


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        instance = MemoryState()
    else:
        instance = RedisState(
            request.getfixturevalue("redis_server_url"), f"t{uuid.uuid4().hex[:8]}"
        )
    yield instance
    await instance.close()


async def test_shared_state_values_counters_and_hashes(state) -> None:  # type: ignore[no-untyped-def]
    await state.set("a", "1", ttl=0.2)
    assert await state.get("a") == "1"
    assert [await state.incr("hits", ttl=0.2) for _ in range(3)] == [1, 2, 3]
    await state.hset("binding:1001", "c1", "sip:1001@10.0.0.1", ttl=0.2)
    await state.hset("binding:1001", "c2", "sip:1001@10.0.0.2", ttl=0.2)
    await state.hdel("binding:1001", "c1")
    assert await state.hgetall("binding:1001") == {"c2": "sip:1001@10.0.0.2"}
    await asyncio.sleep(0.3)
    assert await state.get("a") is None
    assert await state.incr("hits", ttl=1) == 1, "a counter's window restarts after it expires"
    assert await state.hgetall("binding:1001") == {}
