"""Real phones (pjsua2 in their own processes) register and call through the exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, write_tone_wav
from voip.models import CallRecord, Disposition


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server")
    yield server
    await server.stop()


async def record_of(server: Unicomm) -> CallRecord:
    for _ in range(50):
        await server.voip.cdr.flush()
        async with server.ctx.db.session() as session:
            row = await session.scalar(select(CallRecord))
        if row is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError("no call record written")


@pytest.mark.parametrize("hangup_by", ["caller", "callee"])
async def test_two_phones_talk_440_hz_through_the_exchange(
    unicomm: Unicomm, tmp_path: Path, hangup_by: str
) -> None:
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 3.0)
    heard = tmp_path / "heard.wav"
    port = unicomm.sip_port
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        incoming = await bob.wait_incoming()
        await incoming.answer()
        await call.wait_state("CONFIRMED")
        await incoming.wait_state("CONFIRMED")
        await call.wait_media()
        await incoming.wait_media()
        await incoming.record(heard)
        await call.play(tone)
        await asyncio.sleep(2.0)
        await incoming.stop_record()
        live = await unicomm.ctx.state.hgetall("voip:calls")
        assert len(live) == 1 and '"answered"' in next(iter(live.values()))
        ender, other = (call, incoming) if hangup_by == "caller" else (incoming, call)
        await ender.hangup()
        await other.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440.0) < 15
    record = await record_of(unicomm)
    assert record.disposition is Disposition.ANSWERED and record.hangup_side == hangup_by
    assert record.duration_seconds > 1.5
    await unicomm.voip.live.drain()
    assert await unicomm.ctx.state.hgetall("voip:calls") == {}


async def test_hold_resume_and_a_reinvite_without_sdp_reach_the_other_phone(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 8.0)
    heard = tmp_path / "heard-after-reinvite.wav"
    port = unicomm.sip_port
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        incoming = await bob.wait_incoming()
        await incoming.answer()
        await call.wait_media()
        await incoming.wait_media()
        # Hold from either side: a re-INVITE with a=sendonly, relayed to the other
        # phone, which then sees the remote hold (and the holder its local hold).
        for holder, held in ((call, incoming), (incoming, call)):
            held_mark, holder_mark = held.phone.events.mark(), holder.phone.events.mark()
            await holder.hold()
            await held.wait_media_status("remote_hold", held_mark)
            await holder.wait_media_status("local_hold", holder_mark)
            held_mark, holder_mark = held.phone.events.mark(), holder.phone.events.mark()
            await holder.unhold()
            await held.wait_media_status("active", held_mark)
            await holder.wait_media_status("active", holder_mark)
        # A re-INVITE without SDP: bob's offer comes in the 200, alice's answer in
        # the ACK, which the exchange must carry to bob. Without it pjsua ends the call.
        mark = bob.events.mark()
        await call.reinvite(offer=False)
        await incoming.wait_media_status("active", mark)
        await incoming.record(heard)
        await call.play(tone)
        await asyncio.sleep(2.5)
        await incoming.stop_record()
        assert incoming.state is not None and incoming.state.state == "CONFIRMED"
        await call.hangup()
        await incoming.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440.0) < 15
    record = await record_of(unicomm)
    assert record.disposition is Disposition.ANSWERED and record.hangup_side == "caller"
