"""Escalation by phone call, end to end: a broadcast nobody acknowledges, the exchange
calls, pjsua2 phones registered as the contacts' extensions ring.

One phone answers and records what it hears (espeak-ng speech, well above silence,
seconds long); one rejects the call (busy); one is left ringing (no answer). Each
recipient's outcome is in the database and in the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from core.models import Role
from media.audio import read_wav, rms_dbfs
from sms import service
from sms.models import CallState, EscalationCall
from sms.runtime import SMS_RUNTIME
from voip import PBX
from voip.models import CallRecord, Disposition

ALERT = "Typhoon warning. Stay indoors."


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", voip_media_workers=1)
    pool = server.http.app[PBX].pool
    assert pool is not None and all(worker.ready.is_set() for worker in pool.workers)
    runner = server.http.app[SMS_RUNTIME].escalation
    runner.ring_seconds = 8.0  # the phone left ringing: no answer after 8 s
    runner.poll_seconds = 0.2
    yield server
    await server.stop()


async def _officer(server: Unicomm) -> tuple[aiohttp.ClientSession, dict[str, str]]:
    async with server.ctx.db.session() as session:
        await server.ctx.auth.create_user(session, "duty", "password-123", Role.DUTY_OFFICER)
    # unsafe: keep the session cookie of an IP-address host.
    http = aiohttp.ClientSession(
        f"http://127.0.0.1:{server.http_port}", cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    response = await http.post(
        "/api/auth/login", json={"username": "duty", "password": "password-123"}
    )
    assert response.status == 200, await response.text()
    return http, {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def _until(check: Any, seconds: float, what: str) -> Any:
    for _ in range(int(seconds * 10)):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_unacknowledged_recipients_are_called_and_the_outcomes_recorded(
    unicomm: Unicomm, tmp_path: Path, output_dir: Path
) -> None:
    async with unicomm.ctx.db.session() as session:
        for name, mobile, extension in (
            ("Zhang Wei", "13800000001", "1001"),
            ("Li Na", "13800000002", "1002"),
            ("Wang Fang", "13800000003", "1003"),
        ):
            await service.add_contact(
                session, name=name, mobile=mobile, language="en", extension=extension
            )
    heard = output_dir / "escalation-heard.wav"
    http, headers = await _officer(unicomm)
    async with (
        http,
        Phone.start("zhang", log_dir=tmp_path) as zhang,
        Phone.start("li", log_dir=tmp_path) as li,
        Phone.start("wang", log_dir=tmp_path) as wang,
    ):
        for phone, number in ((zhang, "1001"), (li, "1002"), (wang, "1003")):
            await phone.register("127.0.0.1", unicomm.sip_port, number, PASSWORD)
        created = await http.post(
            "/api/sms/broadcasts",
            headers=headers,
            json={
                "text": ALERT,
                "mobiles": ["13800000001", "13800000002", "13800000003"],
                "escalate_after_minutes": 0.05,  # 3 seconds
                "escalate_call": True,
            },
        )
        assert created.status == 201, await created.text()
        broadcast = await created.json()
        # Nobody acknowledges the text: after 3 s the exchange calls all three.
        answered = await zhang.wait_incoming(timeout=30)
        busy = await li.wait_incoming(timeout=30)
        await wang.wait_incoming(timeout=30)  # left ringing
        await busy.reject(486)
        await answered.answer()
        await answered.wait_state("CONFIRMED")
        await answered.wait_media()
        await answered.record(heard)
        await answered.wait_state("DISCONNECTED", timeout=60)  # read twice, then hung up
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)

        async def outcomes() -> dict[str, str] | None:
            async with unicomm.ctx.db.session() as session:
                rows = await session.execute(select(EscalationCall.number, EscalationCall.state))
                found = {number: CallState(state).value for number, state in rows}
            done = len(found) == 3 and not {"pending", "claimed", "dialling"} & set(found.values())
            return found if done else None

        assert await _until(outcomes, 30, "the three outcomes") == {
            "1001": "answered",
            "1002": "busy",
            "1003": "no_answer",
        }
        rows = await (await http.get(f"/api/sms/broadcasts/{broadcast['id']}/recipients")).json()
        progress = await (await http.get(f"/api/sms/broadcasts/{broadcast['id']}")).json()
    calls = {row["call"]["number"]: row["call"] for row in rows}
    assert calls["1001"]["state"] == "answered" and calls["1001"]["talk_seconds"] > 4
    assert (calls["1002"]["state"], calls["1002"]["sip_status"]) == ("busy", 486)
    assert calls["1003"]["state"] == "no_answer"
    assert progress["calls"] == {"answered": 1, "busy": 1, "no_answer": 1}
    assert progress["escalated_at"] and progress["escalation_note"].startswith("3 unacknowledged")
    # What the phone heard: speech read twice, far above silence (G.711 idle: about -70 dBFS).
    audio = read_wav(heard)
    assert audio.seconds > 5.0
    assert rms_dbfs(heard) > -35.0
    # The exchange wrote its call records like for any call.
    await unicomm.voip.cdr.flush()
    async with unicomm.ctx.db.session() as session:
        records = {
            r.callee: r.disposition for r in (await session.scalars(select(CallRecord))).all()
        }
    assert records == {
        "1001": Disposition.ANSWERED,
        "1002": Disposition.BUSY,
        "1003": Disposition.NO_ANSWER,
    }
