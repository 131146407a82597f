"""The pjsua2 test phones themselves, calling each other directly (no server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.events import PeerFailed
from support.phones import Phone

from media.audio import dominant_frequency, is_silent, write_tone_wav


async def test_direct_call_carries_a_tone_and_hangup_reaches_the_far_end(tmp_path: Path) -> None:
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 1.0)
    recording = tmp_path / "heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        call = await alice.call(bob.uri)
        incoming = await bob.wait_incoming()
        assert incoming.incoming is not None and "alice" in incoming.incoming["remote"]
        assert "INVITE sip:bob@" in incoming.incoming["message"]
        await incoming.wait_state("EARLY")  # the phone rings with 180 on its own
        assert (await call.wait_state("EARLY")).code == 180
        await incoming.record(recording)  # connected once media flows
        await call.play(tone)
        await incoming.answer()
        assert (await call.wait_state("CONFIRMED")).code == 200
        await incoming.wait_state("CONFIRMED")
        await incoming.wait_media()
        await asyncio.sleep(1.5)
        await incoming.stop_record()

        await call.hangup()
        assert (await incoming.wait_state("DISCONNECTED")).code == 200  # BYE from alice
        await call.wait_state("DISCONNECTED")

    assert not is_silent(recording)
    assert dominant_frequency(recording, skip_seconds=0.2) == pytest.approx(440.0, abs=10.0)


async def test_dtmf_hold_and_hangup_by_the_callee(tmp_path: Path) -> None:
    async with (
        Phone.start("carol", log_dir=tmp_path) as carol,
        Phone.start("dave", log_dir=tmp_path) as dave,
    ):
        await carol.call(dave.uri)
        await dave.wait_incoming()
        await dave.answer()
        await carol.wait_state("CONFIRMED")
        await dave.wait_state("CONFIRMED")
        await carol.current.wait_media()  # type: ignore[union-attr]

        await carol.send_dtmf("1#9")
        assert await dave.wait_digits("1#9") == "1#9"
        await dave.send_dtmf("*0")
        assert await carol.wait_digits("*0") == "*0"

        mark = dave.events.mark()
        await carol.hold()
        # The held side sees a re-INVITE with a=sendonly and answers recvonly.
        await dave.events.wait(
            lambda e: e.get("event") == "media_state" and not e["active"], 5, "hold", mark
        )
        await carol.unhold()
        await dave.events.wait(
            lambda e: e.get("event") == "media_state" and e["active"], 5, "unhold", mark
        )

        await dave.hangup()
        assert (await carol.wait_state("DISCONNECTED")).code == 200


async def test_rejected_call_reports_the_status_and_a_wait_fails_clearly(tmp_path: Path) -> None:
    async with (
        Phone.start("erin", log_dir=tmp_path) as erin,
        Phone.start("frank", log_dir=tmp_path) as frank,
    ):
        call = await erin.call(frank.uri)
        await frank.wait_incoming()
        await frank.reject(486)
        ended = await call.wait_state("DISCONNECTED")
        assert (ended.code, ended.reason) == (486, "Busy Here")

        second = await erin.call(frank.uri)
        await frank.wait_incoming()
        await frank.reject(603)
        with pytest.raises(PeerFailed, match="603"):
            await second.wait_state("CONFIRMED")


async def test_phone_process_is_killed_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="test failed"):
        async with Phone.start("gina", log_dir=tmp_path) as gina:
            process = gina._process
            raise RuntimeError("test failed")
    assert process is not None and process.returncode is not None
