"""Media workers: pjsua2 processes supervised by the server answer feature numbers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, is_silent, write_tone_wav
from voip import PBX
from voip.media_engine import MediaPool
from voip.models import CallRecord, Disposition


async def started(tmp_path: Path, workers: int) -> Unicomm:
    server = await start_unicomm(tmp_path / "server", voip_media_workers=workers)
    pool = server.http.app[PBX].pool
    assert pool is not None and all(worker.ready.is_set() for worker in pool.workers)
    return server


@pytest.fixture
async def one_worker(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await started(tmp_path, 1)
    yield server
    await server.stop()


def pool_of(server: Unicomm) -> MediaPool:
    pool = server.http.app[PBX].pool
    assert pool is not None
    return pool


async def hear(phone: Phone, port: int, number: str, path: Path, seconds: float = 1.5) -> None:
    call = await phone.call(f"sip:{number}@127.0.0.1:{port}")
    await call.wait_state("CONFIRMED")
    await call.wait_media()
    await call.record(path)
    await asyncio.sleep(seconds)
    await call.stop_record()
    await call.hangup()
    await call.wait_state("DISCONNECTED")
    await asyncio.sleep(RECORDER_FINALISE_SECONDS)


async def records(server: Unicomm, count: int) -> list[CallRecord]:
    for _ in range(50):
        await server.voip.cdr.flush()
        async with server.ctx.db.session() as session:
            rows = list((await session.scalars(select(CallRecord).order_by(CallRecord.id))).all())
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} call records")


async def test_test_tone_and_echo_numbers_are_heard(one_worker: Unicomm, tmp_path: Path) -> None:
    port = one_worker.sip_port
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 4.0)
    async with Phone.start("alice", log_dir=tmp_path) as alice:
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        await hear(alice, port, "*44", tmp_path / "milliwatt.wav")
        # Echo test: what the phone sends comes back from the worker.
        call = await alice.call(f"sip:*43@127.0.0.1:{port}")
        await call.wait_state("CONFIRMED")
        await call.wait_media()
        await call.play(tone)
        await call.record(tmp_path / "echo.wav")
        await asyncio.sleep(1.5)
        await call.stop_record()
        await call.hangup()
        await call.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(tmp_path / "milliwatt.wav", skip_seconds=0.3) - 1004) < 15
    assert not is_silent(tmp_path / "echo.wav")
    assert abs(dominant_frequency(tmp_path / "echo.wav", skip_seconds=0.3) - 440) < 15
    rows = await records(one_worker, 2)
    assert [(r.callee, r.disposition) for r in rows] == [
        ("*44", Disposition.ANSWERED),
        ("*43", Disposition.ANSWERED),
    ]
    for _ in range(20):  # the worker reports the end a moment after the BYE
        if pool_of(one_worker).in_use == 0:
            break
        await asyncio.sleep(0.1)
    assert pool_of(one_worker).in_use == 0


async def test_the_fifth_call_on_a_one_worker_pool_is_busy(
    one_worker: Unicomm, tmp_path: Path
) -> None:
    port = one_worker.sip_port
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        calls = [await alice.call(f"sip:*44@127.0.0.1:{port}") for _ in range(4)]
        for call in calls:
            await call.wait_state("CONFIRMED")
        assert pool_of(one_worker).in_use == 4
        fifth = await bob.call(f"sip:*44@127.0.0.1:{port}")
        ended = await fifth.phone.events.wait(
            lambda e: (
                e.get("event") == "call_state"
                and e.get("call") == fifth.id
                and e["state"] == "DISCONNECTED"
            ),
            5,
            "the fifth call to be refused",
            fifth.since,
        )
        assert ended["code"] == 486
        await calls[0].hangup()
        await calls[0].wait_state("DISCONNECTED")
        for _ in range(20):
            if pool_of(one_worker).in_use < 4:
                break
            await asyncio.sleep(0.1)
        # A slot is free again: the next call is answered.
        again = await bob.call(f"sip:*44@127.0.0.1:{port}")
        await again.wait_state("CONFIRMED")


async def test_a_killed_worker_is_replaced_and_its_calls_end_cleanly(
    one_worker: Unicomm, tmp_path: Path
) -> None:
    port = one_worker.sip_port
    worker = pool_of(one_worker).workers[0]
    old_pid = worker.pid
    assert old_pid is not None
    async with Phone.start("alice", log_dir=tmp_path) as alice:
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        call = await alice.call(f"sip:*44@127.0.0.1:{port}")
        await call.wait_state("CONFIRMED")
        os.kill(old_pid, signal.SIGKILL)
        ended = await call.phone.events.wait(
            lambda e: (
                e.get("event") == "call_state"
                and e.get("call") == call.id
                and e["state"] == "DISCONNECTED"
            ),
            5,
            "the exchange to end the call of the killed worker",
            call.since,
        )
        assert ended["code"] == 200  # a BYE from the exchange, not a timeout
        [record] = await records(one_worker, 1)
        assert record.disposition is Disposition.ANSWERED and record.hangup_side == "system"
        await asyncio.wait_for(worker.ready.wait(), 10)
        assert worker.pid != old_pid and worker.restarts == 1
        await hear(alice, port, "*44", tmp_path / "after.wav", seconds=1.0)
    assert abs(dominant_frequency(tmp_path / "after.wav", skip_seconds=0.3) - 1004) < 15
