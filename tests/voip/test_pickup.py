"""Call pickup (*8, *8<ext>) with real pjsua2 phones, and the SDP bridging it rests on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Phone, ended_with
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, write_tone_wav
from voip import PBX
from voip.features.pickup import bridge_answer
from voip.models import CallRecord
from voip.sip.sdp import parse_sdp

EXTENSIONS = ("1001", "1002", "1003", "1004")


def _sdp(host: str, port: int, formats: str, maps: list[str], direction: str = "") -> bytes:
    lines = [
        "v=0",
        f"o=- 1 2 IN IP4 {host}",
        "s=pjmedia",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        *[f"a={m}" for m in maps],
        *([f"a={direction}"] if direction else []),
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


CALLER = _sdp(
    "10.0.0.1",
    4000,
    "0 8 101",
    [
        "rtpmap:0 PCMU/8000",
        "rtpmap:8 PCMA/8000",
        "rtpmap:101 telephone-event/8000",
        "fmtp:101 0-16",
    ],
)
PICKER = _sdp(
    "10.0.0.3",
    6000,
    "8 96",
    ["rtpmap:8 PCMA/8000", "rtpmap:96 telephone-event/8000", "fmtp:96 0-15"],
    "sendrecv",
)


def test_each_offer_is_answered_with_the_other_phone_cut_to_the_offered_codecs() -> None:
    to_picker = bridge_answer(PICKER, CALLER)
    assert to_picker is not None
    answer = parse_sdp(to_picker)
    (audio,) = answer.media
    assert (answer.connection and answer.connection.address, audio.port) == ("10.0.0.1", 4000)
    assert audio.formats == ["8", "101"]  # PCMU is not in the picker's offer
    assert audio.fmtp(101) == "0-16" and 0 not in audio.rtpmaps()
    to_caller = bridge_answer(CALLER, PICKER)
    assert to_caller is not None
    audio = parse_sdp(to_caller).media[0]
    assert (audio.port, audio.formats, audio.direction) == (6000, ["8", "96"], "sendrecv")


def test_no_common_codec_and_unreadable_bodies_give_nothing() -> None:
    only_pcmu = _sdp("10.0.0.1", 4000, "0", ["rtpmap:0 PCMU/8000"])
    only_g722 = _sdp("10.0.0.3", 6000, "9", ["rtpmap:9 G722/8000"])
    assert bridge_answer(only_pcmu, only_g722) is None
    assert bridge_answer(b"not sdp", only_pcmu) is None
    # A held offer (sendonly) is answered recvonly.
    held = _sdp("10.0.0.3", 6000, "0", ["rtpmap:0 PCMU/8000"], "sendonly")
    answer = bridge_answer(held, CALLER)
    assert answer is not None and parse_sdp(answer).media[0].direction == "recvonly"


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=EXTENSIONS)
    yield server
    await server.stop()


async def test_a_colleague_picks_up_a_ringing_call_and_another_group_cannot(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    # 1001-1004 are all in department IT; 1004 is moved to a pickup group of its own.
    await unicomm.http.app[PBX].features.store.update("1004", pickup_group="lobby")
    alice_tone = write_tone_wav(tmp_path / "alice.wav", 440.0, 6.0)
    carol_tone = write_tone_wav(tmp_path / "carol.wav", 660.0, 6.0)
    carol_heard, alice_heard = tmp_path / "carol-heard.wav", tmp_path / "alice-heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
        Phone.start("dave", log_dir=tmp_path) as dave,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003"), (dave, "1004")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        ringing = await bob.wait_incoming()
        await call.wait_state("EARLY")

        # Dave is in another pickup group: nothing to pick up for him, and not bob's call.
        assert await ended_with(await dave.call(f"sip:*8@127.0.0.1:{port}")) == 404
        assert await ended_with(await dave.call(f"sip:*81002@127.0.0.1:{port}")) == 403
        assert ringing.state is not None and ringing.state.state == "EARLY"  # still ringing

        # Carol (same department) picks it up: bob's phone stops, alice talks to carol.
        picked = await carol.call(f"sip:*8@127.0.0.1:{port}")
        await picked.wait_state("CONFIRMED")
        await call.wait_state("CONFIRMED")
        assert await ended_with(ringing) == 487  # CANCEL: bob's phone stopped ringing
        await picked.wait_media()
        await call.wait_media()
        await picked.record(carol_heard)
        await call.record(alice_heard)
        await call.play(alice_tone)
        await picked.play(carol_tone)
        await asyncio.sleep(2.0)
        await picked.stop_record()
        await call.stop_record()
        await picked.hangup()
        assert await ended_with(call) == 200
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(carol_heard, skip_seconds=0.3) - 440) < 15
    assert abs(dominant_frequency(alice_heard, skip_seconds=0.3) - 660) < 15
    await unicomm.voip.cdr.flush()
    async with unicomm.ctx.db.session() as session:
        rows = (await session.scalars(select(CallRecord).order_by(CallRecord.id))).all()
    answered = [(r.caller, r.callee, r.hangup_side) for r in rows if r.answered_at is not None]
    assert answered == [("1001", "1003", "callee")]


async def test_directed_pickup_names_the_ringing_extension(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        # Nothing rings at 1002 yet: nothing to pick up.
        assert await ended_with(await carol.call(f"sip:*81002@127.0.0.1:{port}")) == 404
        call = await alice.call(f"sip:1002@127.0.0.1:{port}")
        ringing = await bob.wait_incoming()
        await call.wait_state("EARLY")
        picked = await carol.call(f"sip:*81002@127.0.0.1:{port}")
        await picked.wait_state("CONFIRMED")
        await call.wait_state("CONFIRMED")
        assert await ended_with(ringing) == 487
        await call.hangup()
        assert await ended_with(picked) == 200


async def test_a_recorded_call_picked_up_is_recorded_with_the_picker(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    """The caller records: its call is anchored, and the picker's answer crosses the relay."""
    port = unicomm.sip_port
    features = unicomm.http.app[PBX].features
    await features.store.update("1001", record_calls=True)
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
        ringing = await bob.wait_incoming()
        await call.wait_state("EARLY")
        picked = await carol.call(f"sip:*8@127.0.0.1:{port}")
        await picked.wait_state("CONFIRMED")
        assert await ended_with(ringing) == 487
        await picked.wait_media()
        await picked.record(heard)
        await call.play(tone)
        await asyncio.sleep(2.0)
        await picked.stop_record()
        await call.hangup()
        assert await ended_with(picked) == 200
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440) < 15
    await features.recordings.drain()
    (row,) = await features.recordings.of_extension("1001")
    assert (row.peer, row.direction) == ("1003", "outgoing")
