"""PBX features with real phones: forwarding, DND, voicemail with MWI, ring groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.phones import RECORDER_FINALISE_SECONDS, Call, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, write_tone_wav
from voip import PBX
from voip.features.ringgroups import RingGroup, Strategy
from voip.features.service import PbxFeatures
from voip.sip.message_summary import MessageSummary

EXTENSIONS = ("1001", "1002", "1003", "1004")


def features_of(server: Unicomm) -> PbxFeatures:
    return server.http.app[PBX].features


@pytest.fixture
async def with_worker(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=EXTENSIONS, voip_media_workers=1)
    yield server
    await server.stop()


@pytest.fixture
async def without_workers(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=EXTENSIONS)
    yield server
    await server.stop()


async def ended_with(call: Call, within: float = 10.0) -> int:
    state = await call.phone.events.wait(
        lambda e: (
            e.get("event") == "call_state"
            and e.get("call") == call.id
            and e["state"] == "DISCONNECTED"
        ),
        within,
        f"call {call.id} of {call.phone.name} to end",
        call.since,
    )
    return int(state["code"])


async def feature_code(phone: Phone, port: int, code: str) -> None:
    """Dial a feature code and hear its spoken confirmation to the end."""
    call = await phone.call(f"sip:{code}@127.0.0.1:{port}")
    await call.wait_state("CONFIRMED")
    assert await ended_with(call, 15) == 200  # the worker said its piece and hung up


async def test_forwarding_and_dnd_by_feature_codes_ring_the_right_phone(
    with_worker: Unicomm, tmp_path: Path
) -> None:
    port = with_worker.sip_port
    store = features_of(with_worker).store
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003")):
            await phone.register("127.0.0.1", port, number, PASSWORD)

        # *72 1003: alice forwards everything to carol; bob's call rings carol, not alice.
        await feature_code(alice, port, "*721003")
        assert store.get("1001").forward_always == "1003"
        call = await bob.call(f"sip:1001@127.0.0.1:{port}")
        incoming = await carol.wait_incoming()
        await incoming.answer()
        await call.wait_state("CONFIRMED")
        assert alice.events.find(lambda e: e.get("event") == "incoming") is None
        await call.hangup()
        await incoming.wait_state("DISCONNECTED")

        # *73: off again. Forward on no answer (set as the console does): alice rings
        # for a second, then carol.
        await feature_code(alice, port, "*73")
        await store.update("1001", forward_no_answer="1003", no_answer_seconds=1)
        call = await bob.call(f"sip:1001@127.0.0.1:{port}")
        ringing = await alice.wait_incoming()
        incoming = await carol.wait_incoming(timeout=5)
        await ringing.wait_state("DISCONNECTED")  # cancelled when forwarding began
        await incoming.answer()
        await call.wait_state("CONFIRMED")
        await call.hangup()
        await incoming.wait_state("DISCONNECTED")

        # Forward on busy: alice rejects, carol rings.
        await store.update("1001", forward_no_answer="", forward_busy="1003")
        call = await bob.call(f"sip:1001@127.0.0.1:{port}")
        ringing = await alice.wait_incoming()
        await ringing.reject(486)
        incoming = await carol.wait_incoming(timeout=5)
        await incoming.answer()
        await call.wait_state("CONFIRMED")
        await call.hangup()

        # *78: do not disturb, no mailbox: bob hears busy and alice's phone stays quiet.
        await store.update("1001", forward_busy="", voicemail=False)
        await feature_code(alice, port, "*78")
        assert store.get("1001").dnd
        since = len(alice.events.events)
        call = await bob.call(f"sip:1001@127.0.0.1:{port}")
        assert await ended_with(call) == 486
        assert alice.events.find(lambda e: e.get("event") == "incoming", since) is None
        await feature_code(alice, port, "*79")
        assert not store.get("1001").dnd


async def test_an_unanswered_call_leaves_a_voicemail_and_lights_the_lamp(
    with_worker: Unicomm, tmp_path: Path
) -> None:
    port = with_worker.sip_port
    features = features_of(with_worker)
    await features.store.update("1001", no_answer_seconds=1, language="en")
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 3.0)
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        await alice.register("127.0.0.1", port, "1001", PASSWORD)
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        call = await bob.call(f"sip:1001@127.0.0.1:{port}")
        await call.play(tone)
        ringing = await alice.wait_incoming()
        await call.wait_state("CONFIRMED", timeout=10)  # the mailbox answered
        await ringing.wait_state("DISCONNECTED")
        await asyncio.sleep(2.6 + 2.0)  # the greeting and the beep, then a message
        await call.hangup()
        await call.wait_state("DISCONNECTED")
        body = await alice.wait_mwi(True, timeout=10)
    summary = MessageSummary.parse(body)
    assert (summary.new, summary.old) == (1, 0) and summary.account.startswith("sip:1001@")
    [message] = await features.voicemail.messages("1001")
    assert message.caller == "1002" and not message.heard
    assert message.duration_seconds > 1.0
    await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(message.path, skip_seconds=0.2) - 440) < 15


async def test_an_ordered_ring_group_skips_a_busy_member(
    without_workers: Unicomm, tmp_path: Path
) -> None:
    port = without_workers.sip_port
    groups = features_of(without_workers).groups
    await groups.save(
        RingGroup("600", "Help desk", Strategy.ORDERED, ("1001", "1002", "1003"), ring_seconds=2)
    )
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
        Phone.start("dave", log_dir=tmp_path) as dave,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003"), (dave, "1004")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        # Alice is talking to dave: the group passes her by.
        talk = await dave.call(f"sip:1001@127.0.0.1:{port}")
        answered = await alice.wait_incoming()
        await answered.answer()
        await talk.wait_state("CONFIRMED")
        since = len(alice.events.events)

        call = await dave.call(f"sip:600@127.0.0.1:{port}")
        first = await bob.wait_incoming()
        await first.reject(486)  # bob is busy too (his phone says so)
        second = await carol.wait_incoming(timeout=5)
        await second.answer()
        await call.wait_state("CONFIRMED")
        assert alice.events.find(lambda e: e.get("event") == "incoming", since) is None
        await call.hangup()
        await talk.hangup()
