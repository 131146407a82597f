"""Hold with music, with real pjsua2 phones and a media worker playing the music."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from support.phones import RECORDER_FINALISE_SECONDS, Call, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, read_wav, rms_dbfs, write_tone_wav
from voip import PBX
from voip.features.hold import held_as_inactive, synthesize_music
from voip.features.service import PbxFeatures
from voip.sip.sdp import parse_sdp


def test_the_built_in_music_is_a_tune_not_a_tone() -> None:
    samples = synthesize_music()
    assert len(samples) / 8000 > 10
    assert len(_notes(samples)) >= 4


def test_a_held_offer_goes_on_inactive() -> None:
    offer = (
        b"v=0\r\no=- 1 3 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"
    )
    assert parse_sdp(held_as_inactive(offer)).media[0].direction == "inactive"


def _notes(samples: np.ndarray, rate: int = 8000) -> set[int]:
    """The dominant frequencies (rounded to 10 Hz) of the loud half-second windows."""
    found = set()
    window = rate // 2
    for start in range(0, len(samples) - window, window):
        piece = samples[start : start + window].astype(np.float64)
        if np.sqrt(np.mean(piece**2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece))))
        found.add(round(float(np.argmax(spectrum)) * rate / len(piece) / 10) * 10)
    return found


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", voip_media_workers=1)
    yield server
    await server.stop()


async def alice_calls_bob(alice: Phone, bob: Phone, port: int) -> tuple[Call, Call]:
    """1001 and 1002 registered, 1001 calls 1002, who answers: both calls, media up."""
    await alice.register("127.0.0.1", port, "1001", PASSWORD)
    await bob.register("127.0.0.1", port, "1002", PASSWORD)
    call = await alice.call(f"sip:1002@127.0.0.1:{port}")
    at_bob = await bob.wait_incoming()
    await at_bob.answer()
    await call.wait_state("CONFIRMED")
    await call.wait_media()
    return call, at_bob


async def until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Poll the server's state (its objects have no event to wait on) until ``condition``."""
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition(), f"timed out waiting until {what}"


async def test_the_held_party_hears_music_until_the_call_resumes(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    features: PbxFeatures = unicomm.http.app[PBX].features
    pool = unicomm.http.app[PBX].pool
    assert pool is not None
    on_hold, after = tmp_path / "alice-on-hold.wav", tmp_path / "alice-after.wav"
    bob_heard = tmp_path / "bob-after.wav"
    alice_tone = write_tone_wav(tmp_path / "alice.wav", 440.0, 6.0)
    bob_tone = write_tone_wav(tmp_path / "bob.wav", 1000.0, 6.0)
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        call, at_bob = await alice_calls_bob(alice, bob, port)

        # Bob holds: alice's phone is moved to the media worker, which plays the music.
        since = len(bob.events.events)
        await at_bob.hold()
        await at_bob.wait_media_status("local_hold", since)
        await until(
            lambda: any(h.state == "playing" for h in features.hold.holds.values()),
            "the music plays",
        )
        assert pool.in_use == 1
        await call.record(on_hold)
        await asyncio.sleep(3.0)
        await call.stop_record()
        heard = read_wav(on_hold)
        assert rms_dbfs(heard) > -35, "alice hears the music, not silence"
        assert len(_notes(heard.samples)) >= 3, "a tune of several notes"

        # Bob resumes: alice and bob hear each other again, the worker's slot is free.
        since = len(bob.events.events)
        await at_bob.unhold()
        await at_bob.wait_media_status("active", since)
        await until(lambda: not features.hold.holds, "the music stopped")
        await until(lambda: pool.in_use == 0, "the worker's slot is free")
        await call.record(after)
        await at_bob.record(bob_heard)
        await call.play(alice_tone)
        await at_bob.play(bob_tone)
        await asyncio.sleep(2.0)
        await call.stop_record()
        await at_bob.stop_record()
        await call.hangup()
        await at_bob.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(after, skip_seconds=0.5) - 1000) < 15
    assert abs(dominant_frequency(bob_heard, skip_seconds=0.5) - 440) < 15


async def test_a_call_ended_on_hold_frees_the_worker(unicomm: Unicomm, tmp_path: Path) -> None:
    port = unicomm.sip_port
    features: PbxFeatures = unicomm.http.app[PBX].features
    pool = unicomm.http.app[PBX].pool
    assert pool is not None
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        call, at_bob = await alice_calls_bob(alice, bob, port)
        # This time the caller holds: the callee hears the music.
        await call.hold()
        await until(lambda: bool(features.hold.holds), "the music plays")
        await until(
            lambda: all(h.state == "playing" for h in features.hold.holds.values()), "playing"
        )
        await at_bob.hangup()
        await call.wait_state("DISCONNECTED")
        await until(lambda: not features.hold.holds, "the music stopped")
        await until(lambda: pool.in_use == 0, "the worker's slot is free", within=15)


async def test_hold_then_transfer_ends_the_music_and_joins_the_third_phone(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    """Desk phones hold before a blind transfer: the music stops when the caller moves on."""
    port = unicomm.sip_port
    features: PbxFeatures = unicomm.http.app[PBX].features
    pool = unicomm.http.app[PBX].pool
    assert pool is not None
    tone = write_tone_wav(tmp_path / "alice.wav", 440.0, 6.0)
    heard = tmp_path / "carol-heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        await carol.register("127.0.0.1", port, "1003", PASSWORD)
        call, at_bob = await alice_calls_bob(alice, bob, port)
        await at_bob.hold()
        await until(
            lambda: any(h.state == "playing" for h in features.hold.holds.values()),
            "the music plays",
        )
        await at_bob.transfer(f"sip:1003@127.0.0.1:{port}")
        at_carol = await carol.wait_incoming()
        await at_carol.answer()
        assert await at_bob.wait_transfer() == 200
        await at_carol.wait_state("CONFIRMED")
        await until(lambda: not features.hold.holds, "the music stopped")
        await until(lambda: pool.in_use == 0, "the worker's slot is free")
        await at_carol.wait_media()
        await at_carol.record(heard)
        await call.play(tone)
        await asyncio.sleep(2.0)
        await at_carol.stop_record()
        await call.hangup()
        await at_carol.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.5) - 440) < 15


async def test_a_recorded_call_on_hold_plays_the_music_through_the_relay(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    """An anchored call: the worker's offer and the held phone's answer cross the relay."""
    port = unicomm.sip_port
    features: PbxFeatures = unicomm.http.app[PBX].features
    await features.store.update("1001", record_calls=True)
    on_hold, after = tmp_path / "alice-on-hold.wav", tmp_path / "alice-after.wav"
    bob_tone = write_tone_wav(tmp_path / "bob.wav", 1000.0, 6.0)
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        call, at_bob = await alice_calls_bob(alice, bob, port)
        assert features.recordings.active, "the call is recorded (anchored)"
        since = len(bob.events.events)
        await at_bob.hold()
        await at_bob.wait_media_status("local_hold", since)
        await until(
            lambda: any(h.state == "playing" for h in features.hold.holds.values()),
            "the music plays",
        )
        await call.record(on_hold)
        await asyncio.sleep(2.5)
        await call.stop_record()
        since = len(bob.events.events)
        await at_bob.unhold()
        await at_bob.wait_media_status("active", since)
        await until(lambda: not features.hold.holds, "the music stopped")
        await call.record(after)
        await at_bob.play(bob_tone)
        await asyncio.sleep(2.0)
        await call.stop_record()
        await call.hangup()
        await at_bob.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    heard = read_wav(on_hold)
    assert rms_dbfs(heard) > -35 and len(_notes(heard.samples)) >= 3
    assert abs(dominant_frequency(after, skip_seconds=0.5) - 1000) < 15
    await features.recordings.drain()
    (row,) = await features.recordings.of_extension("1001")
    assert row.duration_seconds > 4
