"""Escalation waves without a telephone: the backup group, and durability across crashes.

The dialer here is a stand-in for ``voip.place_call`` that keeps a log of whom it
rang (tests/sms/test_escalation_calls.py has the real exchange and phones). Crashes
are simulated the way they look in the database: a claim or a "dialling" mark whose
claimant never comes back, and whose lease runs out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from support.browser import chromium

from core import migrations
from core.context import AppContext
from core.db import Database, utcnow
from core.models import Department, Role
from sms import service
from sms.escalation import DialResult, EscalationRunner
from sms.models import Broadcast, CallState, EscalationCall, InboundMessage, Recipient
from sms.runtime import SMS_RUNTIME
from sms.states import DeliveryState


class FakeDialer:
    """Rings nobody; records each number it was asked to dial (after before_dial said yes).

    ``results``: the outcomes of the calls in turn (then ``result``); ``press``: the key
    the callee "presses" in an answered call, handed to ``on_ack`` unless ``silent``.
    """

    def __init__(
        self,
        result: str = "answered",
        dialled: bool = True,
        *,
        results: list[str] | None = None,
        press: str = "",
        silent: bool = False,
    ) -> None:
        self.result = result
        self.results = list(results or [])
        self.dialled = dialled
        self.press = press
        self.silent = silent
        self.rang: list[str] = []
        self.acks: list[bool] = []  # what on_ack answered
        self.hold: asyncio.Event | None = None  # set: the "call" lasts until released

    async def __call__(
        self,
        *,
        number: str,
        text: str,
        language: str,
        caller_name: str,
        ring_seconds: float,
        max_seconds: float,
        before_dial: Callable[[], Awaitable[bool]],
        ack_key: str,
        ack_reply: str,
        on_ack: Callable[[str], Awaitable[bool]],
    ) -> DialResult:
        assert text and caller_name and ack_reply
        assert ack_key == "1" and text.endswith(
            ("收到请按1。", "Press 1 to confirm you received this alert.")
        )
        if self.dialled and not await before_dial():
            return DialResult("cancelled", False)
        if self.dialled:
            self.rang.append(number)
        if self.hold is not None:
            await self.hold.wait()
        result = self.results.pop(0) if self.results else self.result
        digits = ""
        if result == "answered" and self.press:
            digits = self.press
            if not self.silent:
                self.acks.append(await on_ack(self.press))
        status = {"answered": 200, "busy": 486}.get(result, 480)
        return DialResult(result, self.dialled, status, result, None, 1.0, digits)


async def _officer(ctx: AppContext, client: TestClient) -> dict[str, str]:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, "duty", "password-123", Role.DUTY_OFFICER)
        session.add(Department(code="EMERG", name="应急管理局"))
    response = await client.post(
        "/api/auth/login", json={"username": "duty", "password": "password-123"}
    )
    return {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def _until(check: Callable[[], Awaitable[Any]], seconds: float = 20) -> Any:
    for _ in range(int(seconds * 10)):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {check}")


async def _escalated(ctx: AppContext, client: TestClient) -> tuple[int, FakeDialer, dict[str, str]]:
    """A broadcast to three (one acknowledges) escalating by call and to a backup group."""
    headers = await _officer(ctx, client)
    dialer = FakeDialer()
    runner = client.app[SMS_RUNTIME].escalation
    runner.dialer = dialer
    runner.poll_seconds = 0.2
    async with ctx.db.session() as session:
        for name, mobile, extension in (
            ("甲", "13800000001", "1001"),
            ("乙", "13800000002", ""),
            ("丙", "13800000003", "1003"),
            ("丁", "13800000004", ""),
            ("戊", "13800000005", ""),
        ):
            await service.add_contact(
                session, name=name, mobile=mobile, department="EMERG", extension=extension
            )
        # The backup group holds one of the audience (乙) and two others.
        await service.add_group(
            session, "backup", members=["13800000002", "13800000004", "13800000005"]
        )
    created = await client.post(
        "/api/sms/broadcasts",
        headers=headers,
        json={
            "text": "台风红色预警，请留在室内。",
            "mobiles": ["13800000001", "13800000002", "13800000003"],
            "escalate_after_minutes": 0.1,
            "escalate_call": True,
            "escalate_group": "backup",
        },
    )
    assert created.status == 201, await created.text()
    broadcast = await created.json()
    assert broadcast["escalate_after_seconds"] == 6 and broadcast["escalate_at"]

    async def delivered() -> bool:
        async with ctx.db.session() as session:
            counts = await service.state_counts(session, broadcast["id"])
        return counts["delivered"] == 3

    await _until(delivered)
    async with ctx.db.session() as session:  # 甲 answers the text: not escalated
        await service.record_reply(
            session, provider_sid="SM-ack-1", from_mobile="13800000001", body="收到"
        )

    async def escalated() -> Any:
        progress = await (await client.get(f"/api/sms/broadcasts/{broadcast['id']}")).json()
        done = progress["calls"].get("answered") == 2 and progress["counts"]["delivered"] == 4
        return progress if done and progress["status"] == "completed" else None

    await _until(escalated)
    return broadcast["id"], dialer, headers


async def test_backup_group_gets_the_alert_once_and_the_acknowledged_are_not_called(
    app_context: AppContext, client: TestClient
) -> None:
    ctx = app_context
    broadcast_id, dialer, headers = await _escalated(ctx, client)
    progress = await (await client.get(f"/api/sms/broadcasts/{broadcast_id}")).json()
    assert progress["escalated_at"] and progress["recipient_count"] == 5
    assert "2 unacknowledged" in progress["escalation_note"]
    assert sorted(dialer.rang) == ["+8613800000002", "1003"]
    rows = await (await client.get(f"/api/sms/broadcasts/{broadcast_id}/recipients")).json()
    by_mobile = {row["mobile"]: row for row in rows}
    assert by_mobile["+8613800000001"]["call"] is None  # acknowledged: never called
    assert by_mobile["+8613800000002"]["call"]["state"] == "answered"
    assert by_mobile["+8613800000003"]["call"]["number"] == "1003"  # the desk phone
    assert [row["wave"] for row in rows] == [0, 0, 0, 1, 1]
    # Everyone got the text once: 乙 was in both the audience and the backup group.
    log = (Path(ctx.settings.data_dir) / "sms-console.log").read_text()
    for mobile in ("+8613800000002", "+8613800000004", "+8613800000005"):
        assert log.count(mobile) == 1
    assert "+8613800000001" in log

    # A broadcast everybody acknowledges escalates to no one.
    second = await (
        await client.post(
            "/api/sms/broadcasts",
            headers=headers,
            json={
                "text": "演练结束。",
                "mobiles": ["13800000001"],
                "escalate_after_minutes": 0.1,
                "escalate_group": "backup",
            },
        )
    ).json()

    async def acknowledged() -> bool:
        async with ctx.db.session() as session:
            reply = await service.record_reply(
                session, provider_sid=f"SM-ack-{utcnow().timestamp()}", from_mobile="13800000001",
                body="ok",
            )  # fmt: skip
        return reply is not None and reply.broadcast_id == second["id"]

    await _until(acknowledged)

    async def quiet() -> Any:
        progress = await (await client.get(f"/api/sms/broadcasts/{second['id']}")).json()
        return progress if progress["escalated_at"] else None

    progress = await _until(quiet)
    assert progress["escalation_note"] == "everyone had acknowledged"
    assert progress["recipient_count"] == 1 and progress["calls"] == {}


@pytest.mark.browser
async def test_the_broadcast_page_shows_the_escalation(
    app_context: AppContext, client: TestClient, output_dir: Path
) -> None:
    broadcast_id, _, _ = await _escalated(app_context, client)
    base = str(client.make_url("")).rstrip("/")
    async with chromium() as browser:
        page = await browser.new_page(locale="en-US")
        await page.goto(f"{base}/login?next=/console/sms")
        await page.fill("#username", "duty")
        await page.fill("#password", "password-123")
        await page.click("#login")
        await page.wait_for_url(f"{base}/console/sms")
        await page.goto(f"{base}/console/sms#b{broadcast_id}")
        await page.reload()  # the page follows the broadcast named in its hash
        answered = page.locator('#recipients tr[data-call="answered"]')
        await answered.first.wait_for()
        assert await answered.count() == 2
        assert await page.locator('#recipients tr[data-state="acknowledged"]').count() == 1
        note = await page.locator("#escalation-text").inner_text()
        assert "2 unacknowledged" in note and "Answered 2" in note
        await page.screenshot(path=str(output_dir / "escalation.png"), full_page=True)


async def test_escalation_is_refused_without_an_action_or_a_known_group(
    app_context: AppContext, client: TestClient
) -> None:
    headers = await _officer(app_context, client)
    async with app_context.db.session() as session:
        await service.add_contact(session, name="甲", mobile="13800000001", department="EMERG")
    base = {"text": "x", "mobiles": ["13800000001"]}
    for extra, words in (
        ({"escalate_after_minutes": 5}, "needs an action"),
        ({"escalate_call": True}, "needs a time"),
        ({"escalate_after_minutes": 5, "escalate_group": "nobody"}, "no group"),
    ):
        response = await client.post("/api/sms/broadcasts", headers=headers, json=base | extra)
        assert response.status in (404, 422) and words in await response.text(), extra
    bad = await client.post(
        "/api/sms/contacts",
        headers=headers,
        json={"name": "乙", "mobile": "13800000002", "extension": "12ab"},
    )
    assert bad.status == 422


# ---------------------------------------------------------------- durability


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    await migrations.upgrade_async(database_url)
    db = Database(database_url)
    yield db
    await db.close()


async def _due_broadcast(db: Database, mobiles: list[str], *, acknowledged: int = 0) -> int:
    """A broadcast delivered to ``mobiles`` whose escalation (a call) is due now."""
    async with db.session() as session:
        contacts = [
            await service.add_contact(session, name=f"人员{i}", mobile=m)
            for i, m in enumerate(mobiles)
        ]
        broadcast = await service.create_broadcast(
            session,
            body="请立即到岗。",
            created_by="duty",
            contacts=contacts,
            approval_threshold=0,
            escalate_after_seconds=60,
            escalate_call=True,
        )
        broadcast_id = broadcast.id
    async with db.session() as session:
        await session.execute(
            update(Recipient)
            .where(Recipient.broadcast_id == broadcast_id)
            .values(state=DeliveryState.DELIVERED)
        )
        await session.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast_id)
            .values(escalate_at=utcnow() - dt.timedelta(seconds=1))
        )
        first = list(
            await session.scalars(
                select(Recipient.id)
                .where(Recipient.broadcast_id == broadcast_id)
                .order_by(Recipient.id)
                .limit(acknowledged)
            )
        )
        await session.execute(
            update(Recipient)
            .where(Recipient.id.in_(first))
            .values(state=DeliveryState.ACKNOWLEDGED)
        )
    return broadcast_id


async def _calls(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = await session.execute(select(EscalationCall.number, EscalationCall.state))
        return {number: CallState(state).value for number, state in rows}


async def _expire_leases(db: Database) -> None:
    async with db.session() as session:
        await session.execute(
            update(EscalationCall)
            .where(EscalationCall.lease_until.is_not(None))
            .values(lease_until=utcnow() - dt.timedelta(seconds=1))
        )


async def test_two_nodes_run_one_wave(database: Database) -> None:
    broadcast_id = await _due_broadcast(
        database, ["13800000001", "13800000002", "13800000003"], acknowledged=1
    )
    nodes = [EscalationRunner(database, FakeDialer(), node=f"n{i}") for i in range(3)]
    ran = await asyncio.gather(*(node.run_wave(broadcast_id) for node in nodes))
    assert sorted(ran) == [0, 0, 1]
    assert await _calls(database) == {
        "+8613800000002": "pending",
        "+8613800000003": "pending",
    }
    assert await asyncio.gather(*(node.run_due_waves() for node in nodes)) == [0, 0, 0]


async def test_a_crash_before_dialling_calls_again_and_after_dialling_never(
    database: Database,
) -> None:
    await _due_broadcast(database, ["13800000001", "13800000002", "13800000003"])
    crashed = EscalationRunner(database, None, node="crashed")
    await crashed.run_due_waves()
    # The first node claims two calls and dies before anything rang...
    claimed = await crashed.claim(2)
    assert len(claimed) == 2
    # ...or, for the third, dies while it rang: its dialling mark is committed.
    third = (await crashed.claim(1))[0]
    assert await crashed._mark_dialling(third)
    assert sorted((await _calls(database)).values()) == ["claimed", "claimed", "dialling"]

    survivor = EscalationRunner(database, FakeDialer(), node="survivor")
    await survivor.tick()  # leases still running: the survivor leaves them alone
    await survivor.drain()
    assert survivor.dialer.rang == []  # type: ignore[union-attr]
    await _expire_leases(database)
    await survivor.recover()
    states = await _calls(database)
    assert states[third.number] == "interrupted"  # may have rung: never again
    await survivor.tick()
    await survivor.drain()
    assert sorted(survivor.dialer.rang) == sorted(r.number for r in claimed)  # type: ignore[union-attr]
    states = await _calls(database)
    assert sorted(states.values()) == ["answered", "answered", "interrupted"]
    # Nothing is left to do, however often the nodes look.
    for _ in range(3):
        await _expire_leases(database)
        await survivor.tick()
        await survivor.drain()
    assert len(survivor.dialer.rang) == 2  # type: ignore[union-attr]


async def test_an_acknowledgement_before_the_call_skips_it(database: Database) -> None:
    broadcast_id = await _due_broadcast(database, ["13800000001", "13800000002"])
    dialer = FakeDialer()
    runner = EscalationRunner(database, dialer, node="n")
    await runner.run_due_waves()
    [first, second] = await runner.claim(2)
    async with database.session() as session:  # both reply while their calls are prepared
        await session.execute(
            update(Recipient)
            .where(Recipient.broadcast_id == broadcast_id)
            .values(state=DeliveryState.ACKNOWLEDGED)
        )
    await runner.call(first)  # seen before dialling
    assert not await runner._mark_dialling(second)  # refused at the last moment
    await runner.call(second)
    assert dialer.rang == []
    assert sorted((await _calls(database)).values()) == ["skipped", "skipped"]


async def test_a_call_that_never_started_is_retried_then_recorded(database: Database) -> None:
    await _due_broadcast(database, ["13800000001"])
    pool_full = FakeDialer(result="busy", dialled=False)  # voip: media workers full
    runner = EscalationRunner(database, pool_full, node="n")
    runner.retry_seconds = 0.0
    runner.max_attempts = 3
    await runner.run_due_waves()
    for _ in range(5):
        await runner.tick()
        await runner.drain()
    async with database.session() as session:
        call = await session.scalar(select(EscalationCall))
    assert call is not None
    assert (call.state, call.attempts, call.sip_status) == (CallState.BUSY, 3, 486)
    assert pool_full.rang == []


# ---------------------------------------------------------------- acknowledged by key, called again


async def _due_now(db: Database) -> None:
    """The calls waiting to be made again are due (the retry interval has passed)."""
    async with db.session() as session:
        await session.execute(
            update(EscalationCall)
            .where(EscalationCall.state == CallState.PENDING)
            .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
        )


async def _round(runner: EscalationRunner) -> None:
    await runner.tick()
    await runner.drain()


async def _the_call(db: Database) -> EscalationCall:
    async with db.session() as session:
        [call] = (await session.scalars(select(EscalationCall))).all()
        return call


async def test_a_key_press_acknowledges_like_a_reply(database: Database) -> None:
    broadcast_id = await _due_broadcast(database, ["13800000001", "13800000002"])
    dialer = FakeDialer(press="1")
    runner = EscalationRunner(database, dialer, node="n")
    await runner.run_due_waves()
    await _round(runner)
    assert dialer.acks == [True, True]  # recorded when pressed: "confirmed" may be said
    async with database.session() as session:
        recipients = (await session.scalars(select(Recipient).order_by(Recipient.id))).all()
        calls = (await session.scalars(select(EscalationCall))).all()
        inbound = (await session.scalars(select(InboundMessage))).all()
        counts = await service.state_counts(session, broadcast_id)
    assert [(r.state, r.acknowledged_via) for r in recipients] == [
        (DeliveryState.ACKNOWLEDGED, "call"),
        (DeliveryState.ACKNOWLEDGED, "call"),
    ]
    assert all(r.acknowledged_at is not None for r in recipients)
    assert {(c.state, c.digits, c.dial_count) for c in calls} == {(CallState.ANSWERED, "1", 1)}
    # The trail an SMS reply leaves, with the channel: one row per call, naming the recipient.
    assert sorted((m.channel, m.body, m.from_mobile, m.recipient_id) for m in inbound) == [
        ("call", "1", c.number, c.recipient_id) for c in sorted(calls, key=lambda c: c.number)
    ]
    assert {m.provider_sid for m in inbound} == {f"call-{c.id}-1" for c in calls}
    assert counts["acknowledged"] == 2 and counts["delivered"] == 0
    # A late SMS reply finds nothing open: it changes nothing.
    async with database.session() as session:
        reply = await service.record_reply(
            session, provider_sid="SM-late", from_mobile="13800000001", body="收到"
        )
    assert reply is None
    async with database.session() as session:
        vias = set(await session.scalars(select(Recipient.acknowledged_via)))
    assert vias == {"call"}


async def test_answered_without_the_key_stays_unacknowledged(database: Database) -> None:
    broadcast_id = await _due_broadcast(database, ["13800000001"])
    runner = EscalationRunner(database, FakeDialer(), node="n")  # answered, no key
    await runner.run_due_waves()
    await _round(runner)
    call = await _the_call(database)
    assert (call.state, call.digits, call.dial_count) == (CallState.ANSWERED, "", 1)
    async with database.session() as session:
        counts = await service.state_counts(session, broadcast_id)
        inbound = (await session.scalars(select(InboundMessage))).all()
    assert counts["acknowledged"] == 0 and counts["delivered"] == 1 and inbound == []
    for _ in range(2):  # answered: never called again
        await _due_now(database)
        await _round(runner)
    assert runner.dialer.rang == ["+8613800000001"]  # type: ignore[union-attr]


async def test_a_key_known_only_from_the_outcome_still_acknowledges(database: Database) -> None:
    """The write at the key press failed (or never came): the outcome's keys make it good."""
    await _due_broadcast(database, ["13800000001"])
    runner = EscalationRunner(database, FakeDialer(press="1", silent=True), node="n")
    await runner.run_due_waves()
    await _round(runner)
    async with database.session() as session:
        recipient = await session.scalar(select(Recipient))
        inbound = (await session.scalars(select(InboundMessage))).all()
    assert recipient is not None
    assert (recipient.state, recipient.acknowledged_via) == (DeliveryState.ACKNOWLEDGED, "call")
    assert [(m.channel, m.body) for m in inbound] == [("call", "1")]
    assert (await _the_call(database)).digits == "1"


async def test_unanswered_calls_are_made_again_then_recorded(database: Database) -> None:
    await _due_broadcast(database, ["13800000001"])
    dialer = FakeDialer(results=["no_answer", "busy", "no_answer", "answered"])
    runner = EscalationRunner(database, dialer, node="first")
    runner.call_retry_seconds = 120
    await runner.run_due_waves()
    await _round(runner)
    call = await _the_call(database)
    assert (call.state, call.dial_count, call.attempts) == (CallState.PENDING, 1, 1)
    assert call.detail.startswith("call 1 of 3: ") and call.detail.endswith("again in 2 min")
    due = call.next_attempt_at
    waited = (due if due.tzinfo else due.replace(tzinfo=dt.UTC)) - utcnow()  # SQLite: naive
    assert dt.timedelta(seconds=100) < waited <= dt.timedelta(seconds=120)
    await _round(runner)  # not due yet: nobody is called
    assert dialer.rang == ["+8613800000001"]
    # A restart: the next node finds the call again in the database, when it is due.
    restarted = EscalationRunner(database, dialer, node="second")
    await _due_now(database)
    await _round(restarted)
    call = await _the_call(database)
    assert (call.state, call.dial_count, call.sip_status) == (CallState.PENDING, 2, 486)
    await _due_now(database)
    await _round(restarted)
    call = await _the_call(database)  # the third call: the last (call_retries = 2)
    assert (call.state, call.dial_count, call.attempts) == (CallState.NO_ANSWER, 3, 3)
    assert call.detail.startswith("call 3: ")
    for _ in range(2):
        await _due_now(database)
        await _round(restarted)
    assert dialer.rang == ["+8613800000001"] * 3


async def test_no_more_calls_once_acknowledged_by_sms(database: Database) -> None:
    await _due_broadcast(database, ["13800000001", "13800000002"])
    dialer = FakeDialer(result="no_answer")
    runner = EscalationRunner(database, dialer, node="n")
    runner.call_retry_seconds = 0.0
    runner.call_retries = 5
    await runner.run_due_waves()
    await _round(runner)
    assert sorted(dialer.rang) == ["+8613800000001", "+8613800000002"]
    async with database.session() as session:  # the first replies between calls
        await service.record_reply(
            session, provider_sid="SM-ack", from_mobile="13800000001", body="OK"
        )
    await _round(runner)
    async with database.session() as session:
        rows = {c.number: c for c in (await session.scalars(select(EscalationCall))).all()}
        recipient = await session.scalar(
            select(Recipient).where(Recipient.mobile == "+8613800000001")
        )
    first = rows["+8613800000001"]
    assert (first.state, first.dial_count) == (CallState.SKIPPED, 1)
    assert first.detail == "acknowledged between calls: not called again"
    assert recipient is not None and recipient.acknowledged_via == "sms"
    assert rows["+8613800000002"].dial_count == 2  # the other is still being called
    assert dialer.rang.count("+8613800000001") == 1


async def test_a_crash_during_a_second_call_never_makes_a_third(database: Database) -> None:
    await _due_broadcast(database, ["13800000001"])
    first = EscalationRunner(database, FakeDialer(result="no_answer"), node="first")
    await first.run_due_waves()
    await _round(first)
    await _due_now(database)
    crashed = EscalationRunner(database, None, node="crashed")
    [again] = await crashed.claim(1)
    assert (again.attempts, again.dial_count) == (2, 1)
    assert await crashed._mark_dialling(again)  # it rings, and the node dies
    survivor = EscalationRunner(database, FakeDialer(), node="survivor")
    await _expire_leases(database)
    for _ in range(3):
        await _due_now(database)
        await _round(survivor)
    call = await _the_call(database)
    assert (call.state, call.dial_count) == (CallState.INTERRUPTED, 2)
    assert survivor.dialer.rang == []  # type: ignore[union-attr]
