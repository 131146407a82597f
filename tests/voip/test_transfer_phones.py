"""Transfer by REFER (RFC 3515) with real pjsua2 phones: the caller lands on the third phone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, write_tone_wav
from voip.models import CallRecord

EXTENSIONS = ("1001", "1002", "1003")


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=EXTENSIONS)
    yield server
    await server.stop()


async def test_blind_transfer_lands_the_caller_on_the_third_phone(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    alice_tone = write_tone_wav(tmp_path / "alice.wav", 440.0, 6.0)
    carol_tone = write_tone_wav(tmp_path / "carol.wav", 660.0, 6.0)
    carol_heard, alice_heard = tmp_path / "carol-heard.wav", tmp_path / "alice-heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        at_bob = await bob.wait_incoming()
        await at_bob.answer()
        await call.wait_state("CONFIRMED")

        # Bob sends alice on to carol: REFER, 202, NOTIFY 100 ... 200, then bob is let go.
        await at_bob.transfer(f"sip:1003@127.0.0.1:{port}")
        at_carol = await carol.wait_incoming()
        await at_carol.answer()
        assert await at_bob.wait_transfer() == 200
        await at_bob.wait_state("DISCONNECTED")
        await at_carol.wait_state("CONFIRMED")
        assert call.state is not None and call.state.state == "CONFIRMED"  # alice never left

        # Audio both ways between alice and carol, through the re-INVITE's new media.
        await at_carol.wait_media()
        await at_carol.record(carol_heard)
        await call.record(alice_heard)
        await call.play(alice_tone)
        await at_carol.play(carol_tone)
        await asyncio.sleep(2.0)
        await at_carol.stop_record()
        await call.stop_record()
        await call.hangup()
        await at_carol.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(carol_heard, skip_seconds=0.3) - 440) < 15
    assert abs(dominant_frequency(alice_heard, skip_seconds=0.3) - 660) < 15
    await unicomm.voip.cdr.flush()
    async with unicomm.ctx.db.session() as session:
        rows = (await session.scalars(select(CallRecord))).all()
    assert [(r.caller, r.callee, r.hangup_side) for r in rows] == [("1001", "1003", "caller")]


async def test_a_transfer_to_a_phone_that_is_not_there_keeps_the_call(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        at_bob = await bob.wait_incoming()
        await at_bob.answer()
        await call.wait_state("CONFIRMED")
        await at_bob.transfer(f"sip:1003@127.0.0.1:{port}")  # 1003 is not registered
        assert await at_bob.wait_transfer() == 480
        await at_bob.hangup()
        await call.wait_state("DISCONNECTED")


async def test_attended_transfer_with_replaces_joins_the_caller_and_the_consulted_phone(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    tone = write_tone_wav(tmp_path / "alice.wav", 440.0, 6.0)
    heard = tmp_path / "carol-heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        at_bob = await bob.wait_incoming()
        await at_bob.answer()
        await call.wait_state("CONFIRMED")

        # Bob asks carol first (a call of his own), then joins alice to her.
        consult = await bob.call(f"sip:1003@127.0.0.1:{port}")
        at_carol = await carol.wait_incoming()
        await at_carol.answer()
        await consult.wait_state("CONFIRMED")
        await at_bob.transfer_replaces(consult)
        assert await at_bob.wait_transfer() == 200
        await at_bob.wait_state("DISCONNECTED")
        await consult.wait_state("DISCONNECTED")
        assert carol.events.find(lambda e: e.get("event") == "incoming", at_carol.since + 1) is None

        await at_carol.record(heard)
        await call.play(tone)
        await asyncio.sleep(2.0)
        await at_carol.stop_record()
        assert call.state is not None and call.state.state == "CONFIRMED"
        await at_carol.hangup()
        await call.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440) < 15
    await unicomm.voip.cdr.flush()
    async with unicomm.ctx.db.session() as session:
        rows = (await session.scalars(select(CallRecord).order_by(CallRecord.id))).all()
    assert sorted((r.caller, r.callee) for r in rows) == [("1001", "1003"), ("1002", "1003")]
