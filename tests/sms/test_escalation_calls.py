"""Escalation by phone call, end to end: a broadcast nobody acknowledges, the exchange
calls, pjsua2 phones registered as the contacts' extensions ring.

One phone answers and records what it hears (espeak-ng speech, well above silence,
seconds long); one rejects the call (busy); one is left ringing (no answer). Each
recipient's outcome is in the database and in the API.

Acknowledged by key: a phone that answers and presses 1 (an RFC 4733 telephone-event,
as in tests/voip/test_ivr.py) is acknowledged like an SMS reply and hears "Confirmed.";
one that answers without a key is not. Called again: a phone left ringing is called
again after the retry interval and acknowledges then; one whose owner acknowledges by
SMS between the calls is not called again.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from sms.models import CallState, EscalationCall, InboundMessage, Recipient
from sms.runtime import SMS_RUNTIME
from voip import PBX
from voip.models import CallRecord, Disposition

ALERT = "Typhoon warning. Stay indoors."


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(
        tmp_path / "server",
        extensions=("1001", "1002", "1003", "1004"),
        voip_media_workers=1,
        sms_call_retry_minutes=0.1,  # 6 s between an unanswered call and the next
    )
    pool = server.http.app[PBX].pool
    assert pool is not None and all(worker.ready.is_set() for worker in pool.workers)
    runner = server.http.app[SMS_RUNTIME].escalation
    assert (runner.call_retries, runner.call_retry_seconds) == (2, 6.0)  # from the settings
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
    unicomm.http.app[SMS_RUNTIME].escalation.call_retries = 0  # one call each, here
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


@contextlib.asynccontextmanager
async def _escalating(
    server: Unicomm, tmp_path: Path, people: list[tuple[str, str, str]]
) -> AsyncIterator[tuple[aiohttp.ClientSession, list[Phone], int]]:
    """Contacts (name, mobile, extension) with a phone each registered as the extension,
    and a broadcast to them, unacknowledged calls 3 s after it: the officer's session,
    the phones, the broadcast's id."""
    async with server.ctx.db.session() as session:
        for name, mobile, extension in people:
            await service.add_contact(
                session, name=name, mobile=mobile, language="en", extension=extension
            )
    http, headers = await _officer(server)
    async with http, contextlib.AsyncExitStack() as stack:
        phones = []
        for name, _, extension in people:
            phone = await stack.enter_async_context(
                Phone.start(name.split()[0].lower(), log_dir=tmp_path)
            )
            await phone.register("127.0.0.1", server.sip_port, extension, PASSWORD)
            phones.append(phone)
        created = await http.post(
            "/api/sms/broadcasts",
            headers=headers,
            json={
                "text": ALERT,
                "mobiles": [mobile for _, mobile, _ in people],
                "escalate_after_minutes": 0.05,  # 3 seconds
                "escalate_call": True,
            },
        )
        assert created.status == 201, await created.text()
        yield http, phones, int((await created.json())["id"])


async def _calls(server: Unicomm) -> dict[str, EscalationCall]:
    async with server.ctx.db.session() as session:
        return {c.number: c for c in (await session.scalars(select(EscalationCall))).all()}


def _incoming_count(phone: Phone) -> int:
    return sum(1 for event in phone.events.events if event.get("event") == "incoming")


async def test_a_key_press_acknowledges_and_a_silent_answer_does_not(
    unicomm: Unicomm, tmp_path: Path, output_dir: Path
) -> None:
    confirmed = output_dir / "escalation-confirmed.wav"
    people = [("Zhang Wei", "13800000001", "1001"), ("Li Na", "13800000002", "1002")]
    async with _escalating(unicomm, tmp_path, people) as (http, [zhang, li], broadcast):
        pressing = await zhang.wait_incoming(timeout=30)
        silent = await li.wait_incoming(timeout=30)
        for call in (pressing, silent):
            await call.answer()
        for call in (pressing, silent):
            await call.wait_state("CONFIRMED")
            await call.wait_media()
        await asyncio.sleep(2.0)  # into the alert
        await pressing.send_dtmf("1")  # RFC 4733, as a desk phone sends it
        await pressing.record(confirmed)
        await pressing.wait_state("DISCONNECTED", timeout=15)  # "Confirmed.", then hung up
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
        # The silent one hears the alert twice, is given a few seconds for the key, and
        # is hung up on.
        await silent.wait_state("DISCONNECTED", timeout=60)

        async def finished() -> dict[str, EscalationCall] | None:
            calls = await _calls(unicomm)
            done = {c.state for c in calls.values()} <= {CallState.ANSWERED}
            return calls if len(calls) == 2 and done else None

        calls = await _until(finished, 30, "both calls' outcomes")
        rows = await (await http.get(f"/api/sms/broadcasts/{broadcast}/recipients")).json()
        progress = await (await http.get(f"/api/sms/broadcasts/{broadcast}")).json()
    assert (calls["1001"].digits, calls["1002"].digits) == ("1", "")
    assert "1 pressed" in calls["1001"].detail
    # In the API as an SMS reply's acknowledgement is, with its channel.
    by_number = {row["call"]["number"]: row for row in rows}
    assert by_number["1001"]["state"] == "acknowledged"
    assert by_number["1001"]["acknowledged_via"] == "call"
    assert by_number["1001"]["acknowledged_at"]
    assert by_number["1001"]["call"]["digits"] == "1"
    assert by_number["1002"]["state"] == "delivered"
    assert by_number["1002"]["acknowledged_via"] == ""
    assert by_number["1002"]["call"]["state"] == "answered"
    assert progress["counts"]["acknowledged"] == 1 and progress["counts"]["delivered"] == 1
    assert progress["calls"] == {"answered": 2}
    # The same trail as a reply: an inbound row naming the recipient, channel "call".
    async with unicomm.ctx.db.session() as session:
        inbound = (await session.scalars(select(InboundMessage))).all()
        zhang_id = await session.scalar(
            select(Recipient.id).where(Recipient.mobile == "+8613800000001")
        )
    assert [(m.channel, m.body, m.from_mobile, m.recipient_id) for m in inbound] == [
        ("call", "1", "1001", zhang_id)
    ]
    # What zhang heard after the key: "Confirmed." (speech, well above G.711 idle).
    assert rms_dbfs(confirmed) > -35.0 and read_wav(confirmed).seconds < 5.0


async def test_unanswered_calls_are_made_again_until_acknowledged(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    runner = unicomm.http.app[SMS_RUNTIME].escalation
    runner.ring_seconds = 5.0
    people = [("Wang Fang", "13800000003", "1003"), ("Chen Jie", "13800000004", "1004")]
    async with _escalating(unicomm, tmp_path, people) as (http, [wang, chen], broadcast):
        # The first calls ring unanswered.
        first_wang = await wang.wait_incoming(timeout=30)
        first_chen = await chen.wait_incoming(timeout=30)
        await first_wang.wait_state("DISCONNECTED", timeout=20)
        await first_chen.wait_state("DISCONNECTED", timeout=20)

        async def waiting_again() -> dict[str, EscalationCall] | None:
            calls = await _calls(unicomm)
            done = all(c.state is CallState.PENDING and c.dial_count == 1 for c in calls.values())
            return calls if len(calls) == 2 and done else None

        calls = await _until(waiting_again, 10, "both calls to wait for their next time")
        assert calls["1004"].detail.startswith("call 1 of 3: rang, nobody answered")
        # Chen replies to the text before the next call.
        async with unicomm.ctx.db.session() as session:
            await service.record_reply(
                session, provider_sid="SM-chen", from_mobile="13800000004", body="OK"
            )
        # Wang is called again after the interval, answers and presses 1.
        second_wang = await wang.wait_incoming(timeout=20)
        await second_wang.answer()
        await second_wang.wait_state("CONFIRMED")
        await second_wang.wait_media()
        # The test phone's null sound device closed after its first call: a recorder gives
        # its conference bridge a clock again, else it sends no RTP (nor telephone-events).
        await second_wang.record(tmp_path / "wang-second-call.wav")
        await asyncio.sleep(1.5)
        await second_wang.send_dtmf("1")
        await second_wang.wait_state("DISCONNECTED", timeout=15)

        async def finished() -> dict[str, EscalationCall] | None:
            calls = await _calls(unicomm)
            states = {c.number: c.state for c in calls.values()}
            return calls if states == {"1003": "answered", "1004": "skipped"} else None

        calls = await _until(finished, 20, "wang answered and chen skipped")
        await asyncio.sleep(2 * runner.call_retry_seconds)  # long past chen's next time
        assert _incoming_count(chen) == 1  # chen acknowledged by SMS: never called again
        assert _incoming_count(wang) == 2
        rows = await (await http.get(f"/api/sms/broadcasts/{broadcast}/recipients")).json()
        progress = await (await http.get(f"/api/sms/broadcasts/{broadcast}")).json()
    assert (calls["1003"].dial_count, calls["1003"].digits) == (2, "1")
    assert calls["1003"].detail.startswith("call 2: answered")
    assert calls["1004"].dial_count == 1
    assert calls["1004"].detail == "acknowledged between calls: not called again"
    by_number = {row["call"]["number"]: row for row in rows}
    assert (by_number["1003"]["state"], by_number["1003"]["acknowledged_via"]) == (
        "acknowledged",
        "call",
    )
    assert by_number["1003"]["call"]["dial_count"] == 2
    assert (by_number["1004"]["state"], by_number["1004"]["acknowledged_via"]) == (
        "acknowledged",
        "sms",
    )
    assert progress["counts"]["acknowledged"] == 2
    assert progress["calls"] == {"answered": 1, "skipped": 1}
