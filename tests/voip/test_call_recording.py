"""Per-extension call recording in the RTP relay, with real pjsua2 phones."""

from __future__ import annotations

import asyncio
import datetime as dt
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from support.phones import Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from core.context import AppContext
from core.models import AuditEntry, Role
from media.audio import Audio, dominant_frequency, tone_samples, ulaw_encode, write_tone_wav
from voip import PBX
from voip.features.models import CallRecordingRow
from voip.features.recording import CallRecorder
from voip.features.service import PbxFeatures
from voip.service import add_extension

STAFF_PASSWORD = "correct-horse-9"


def read_stereo(path: Path) -> tuple[Audio, Audio]:
    with wave.open(str(path), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth()) == (2, 2)
        rate = source.getframerate()
        frames = np.frombuffer(source.readframes(source.getnframes()), np.int16).reshape(-1, 2)
    return Audio(frames[:, 0].copy(), rate), Audio(frames[:, 1].copy(), rate)


def rtp(sequence: int, timestamp: int, payload: bytes, ssrc: bytes = b"abcd") -> bytes:
    header = bytes([0x80, 0]) + sequence.to_bytes(2, "big") + timestamp.to_bytes(4, "big")
    return header + ssrc + payload


def test_the_recorder_places_packets_by_timestamp_and_keeps_the_channels_apart(
    tmp_path: Path,
) -> None:
    now = [0.0]
    recorder = CallRecorder(tmp_path / "partial", "call", clock=lambda: now[0])
    left = ulaw_encode(tone_samples(440.0, 1.0))
    right = ulaw_encode(tone_samples(1000.0, 1.0))
    recorder.packet(0, rtp(1, 0, left[:160]))  # before start: not recorded
    recorder.start()
    for index in range(50):
        if index == 20:
            continue  # a lost packet: 20 ms of silence, the rest stays in place
        now[0] = index * 0.02
        chunk = slice(index * 160, (index + 1) * 160)
        recorder.packet(0, rtp(index, 1000 + index * 160, left[chunk]))
        recorder.packet(1, rtp(index, 9000 + index * 160, right[chunk], b"efgh"))
    recorder.packet(1, bytes([0x80, 101]) + bytes(10) + b"\x01\x02\x03\x04")  # DTMF: skipped
    seconds = recorder.finish(tmp_path / "call.wav")
    assert seconds == pytest.approx(1.0)
    heard_left, heard_right = read_stereo(tmp_path / "call.wav")
    assert abs(dominant_frequency(heard_left) - 440) < 10
    assert abs(dominant_frequency(heard_right) - 1000) < 10
    assert not np.any(heard_left.samples[20 * 160 : 21 * 160])  # the lost packet
    assert not list((tmp_path / "partial").iterdir())  # the channel files are gone
    silent = CallRecorder(tmp_path / "partial", "nothing")
    silent.start()
    assert silent.finish(tmp_path / "nothing.wav") is None
    assert not (tmp_path / "nothing.wav").exists()


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=("1001", "1002", "1003"))
    yield server
    await server.stop()


async def talk(caller: Phone, callee: Phone, number: str, port: int, folder: Path) -> None:
    """Caller sends 440 Hz, callee 1000 Hz for two seconds, then the caller hangs up."""
    low = folder / "440.wav"
    high = folder / "1000.wav"
    if not low.exists():
        write_tone_wav(low, 440.0, 6.0)
        write_tone_wav(high, 1000.0, 6.0)
    call = await caller.call(f"sip:{number}@127.0.0.1:{port}")
    incoming = await callee.wait_incoming()
    await incoming.answer()
    await call.wait_state("CONFIRMED")
    await call.wait_media()
    await incoming.wait_media()
    await call.play(low)
    await incoming.play(high)
    await asyncio.sleep(2.5)
    await call.hangup()
    await incoming.wait_state("DISCONNECTED")


async def test_a_recorded_extensions_calls_are_recorded_and_others_are_not(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    features: PbxFeatures = unicomm.http.app[PBX].features
    await features.store.update("1001", record_calls=True)
    folder = unicomm.ctx.settings.path("recordings")
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        await talk(alice, bob, "1002", port, tmp_path)  # 1001 records: recorded
        await features.recordings.drain()
        await talk(bob, carol, "1003", port, tmp_path)  # neither records: nothing
        await features.recordings.drain()
        await talk(carol, alice, "1001", port, tmp_path)  # 1001 is called: recorded
        await features.recordings.drain()

    async with unicomm.ctx.db.session() as session:
        rows = (await session.scalars(select(CallRecordingRow).order_by(CallRecordingRow.id))).all()
    assert [(r.extension, r.peer, r.direction) for r in rows] == [
        ("1001", "1002", "outgoing"),
        ("1001", "1003", "incoming"),
    ]
    files = sorted(folder.rglob("*.wav"))
    assert sorted(Path(r.path) for r in rows) == files  # the call 1002 -> 1003 left none
    for row in rows:
        assert 2.0 < row.duration_seconds < 4.5
        caller_side, callee_side = read_stereo(Path(row.path))
        # Left what the caller sent, right the callee: both tones, each on its side.
        assert abs(dominant_frequency(caller_side, skip_seconds=0.3) - 440) < 15
        assert abs(dominant_frequency(callee_side, skip_seconds=0.3) - 1000) < 15

    # Listed per extension and downloadable by the right roles, each download audited.
    base = f"http://127.0.0.1:{unicomm.http_port}"
    async with unicomm.ctx.db.session() as session:
        await unicomm.ctx.auth.create_user(session, "officer", STAFF_PASSWORD, Role.DUTY_OFFICER)
        await unicomm.ctx.auth.create_user(session, "clerk", STAFF_PASSWORD, Role.STAFF)
    async with (
        ClientSession(cookie_jar=CookieJar(unsafe=True)) as officer,
        ClientSession(cookie_jar=CookieJar(unsafe=True)) as clerk,
    ):
        for client, name in ((officer, "officer"), (clerk, "clerk")):
            login = {"username": name, "password": STAFF_PASSWORD}
            assert (await client.post(f"{base}/api/auth/login", json=login)).status == 200
        listed = await officer.get(f"{base}/api/voip/extensions/1001/recordings")
        assert listed.status == 200, await listed.text()
        shown = await listed.json()
        assert [(r["peer"], r["direction"]) for r in shown] == [
            ("1003", "incoming"),
            ("1002", "outgoing"),
        ]
        assert await (await officer.get(f"{base}/api/voip/extensions/1002/recordings")).json() == []
        audio = await officer.get(f"{base}/api/voip/recordings/{shown[0]['id']}/audio")
        assert audio.status == 200 and audio.content_type == "audio/wav"
        assert (await audio.read())[:4] == b"RIFF"
        refused = await clerk.get(f"{base}/api/voip/recordings/{shown[0]['id']}/audio")
        assert refused.status == 403
        assert (await clerk.get(f"{base}/api/voip/extensions/1001/recordings")).status == 403
    async with unicomm.ctx.db.session() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "voip.recording.download")
        )
    assert entry is not None and entry.target == str(shown[0]["id"])

    # Kept for voip_recording_days: a sweep a year on deletes rows and files.
    swept = await features.recordings.sweep(dt.datetime.now(dt.UTC) + dt.timedelta(days=365))
    assert swept == 2
    assert not list(folder.rglob("*.wav"))


async def test_recording_and_pickup_settings_by_api_and_console_in_both_languages(
    client: TestClient, app_context: AppContext
) -> None:
    async with app_context.db.session() as session:
        await add_extension(
            session, number="2001", name="王芳", password="sip-password-1",
            realm=app_context.settings.sip_realm, department_code=None,
        )  # fmt: skip
        await app_context.auth.create_user(session, "ops", STAFF_PASSWORD, Role.OPERATOR)
    login = {"username": "ops", "password": STAFF_PASSWORD}
    signed = await client.post("/api/auth/login", json=login)
    csrf = (await signed.json())["csrf_token"]
    path = "/api/voip/extensions/2001/call-settings"
    shown = await (await client.get(path)).json()
    assert (shown["record_calls"], shown["pickup_group"]) == (False, "")
    body = {"record_calls": True, "pickup_group": "front-desk"}
    changed = await client.patch(path, json=body, headers={"X-CSRF-Token": csrf})
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["record_calls"] is True
    bad = await client.patch(path, json={"pickup_group": "a b"}, headers={"X-CSRF-Token": csrf})
    assert bad.status == 422
    # An operator sets recording but may not hear recordings.
    assert (await client.get("/api/voip/extensions/2001/recordings")).status == 403

    page = "/console/voip/features"
    form = {"csrf_token": csrf, "number": "2001", "pickup_group": "a b", "record_calls": "on"}
    refused = await client.post(f"{page}/recording", data=form, cookies={"lang": "en"})
    assert refused.status == 422 and "Pickup group" in await refused.text()
    form = {"csrf_token": csrf, "number": "2001", "pickup_group": ""}  # the box unticked
    saved = await client.post(f"{page}/recording", data=form, allow_redirects=False)
    assert saved.status == 303
    assert (await (await client.get(path)).json())["record_calls"] is False
    english = await (await client.get(page, cookies={"lang": "en"})).text()
    assert "Record all calls" in english and 'id="recordings"' not in english
    chinese = await (await client.get(page, cookies={"lang": "zh"})).text()
    assert "全部通话录音" in chinese and "代接组" in chinese
