"""The delivery engine with the official twilio library against the local server."""

from __future__ import annotations

import collections
from typing import Any

import aiohttp
from sqlalchemy import select

from core.models import Role
from sms import service
from sms.models import Recipient
from sms.states import FINAL
from sms.testing.twilio_server import read_log


async def _states(stack: Any, broadcast_id: int) -> dict[str, str]:
    async with stack.ctx.db.session() as session:
        rows = await session.execute(
            select(Recipient.mobile, Recipient.state).where(Recipient.broadcast_id == broadcast_id)
        )
        return {mobile: state.value for mobile, state in rows}


async def test_thousand_recipients_end_in_the_outcome_the_server_produced(sms_stack: Any) -> None:
    stack = await sms_stack(
        undelivered_ratio=0.1,
        failed_ratio=0.05,
        delay_seconds=(0.0, 0.3),
        reorder_ratio=0.3,
        rate_limit_per_second=600,
    )
    await stack.contacts(1000)
    headers = await stack.login("duty", Role.DUTY_OFFICER)
    response = await stack.client.post(
        "/api/sms/broadcasts",
        json={"text": "防汛演练：请于15:00到三楼集合。", "departments": ["EMERG"]},
        headers=headers,
    )
    assert response.status == 201, await response.text()
    broadcast_id = (await response.json())["id"]

    async def finished() -> dict[str, str] | None:
        states = await _states(stack, broadcast_id)
        return states if all(state in FINAL for state in states.values()) else None

    states = await stack.wait_for(finished, within=90, what="every recipient final")
    assert len(states) == 1000
    expected = {mobile: stack.twilio.outcome_for(mobile) for mobile in states}
    assert states == expected
    counts = collections.Counter(states.values())
    assert counts["undelivered"] > 50 and counts["failed"] > 20  # the mix really happened

    log = read_log(stack.twilio.config.log_path)
    assert sorted(r["to"] for r in log) == sorted(states)  # each exactly once
    progress = await (await stack.client.get(f"/api/sms/broadcasts/{broadcast_id}")).json()
    assert progress["counts"]["delivered"] == counts["delivered"]


async def test_forged_or_unsigned_callback_is_refused_and_changes_nothing(sms_stack: Any) -> None:
    stack = await sms_stack(delay_seconds=(30.0, 30.0))  # real callbacks come much later
    await stack.contacts(1)
    headers = await stack.login("duty", Role.DUTY_OFFICER)
    response = await stack.client.post(
        "/api/sms/broadcasts", json={"text": "test", "departments": ["EMERG"]}, headers=headers
    )
    broadcast_id = (await response.json())["id"]

    async def sent() -> Any:
        async with stack.ctx.db.session() as session:
            row = await session.scalar(
                select(Recipient).where(Recipient.broadcast_id == broadcast_id)
            )
            return row if row is not None and row.state.value == "sent" else None

    row = await stack.wait_for(sent, what="sent")
    url = f"{stack.base_url}/api/sms/twilio/status?r={row.id}"
    params = {
        "MessageSid": row.provider_sid,
        "MessageStatus": "failed",
        "AccountSid": stack.twilio.config.account_sid,
    }
    forged = {"X-Twilio-Signature": stack.twilio.sign(url, {**params, "MessageStatus": "sent"})}
    wrong_key = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    # As the provider calls: no session cookie, only the signature.
    async with aiohttp.ClientSession() as provider:
        for attempt in (forged, wrong_key, {}):
            async with provider.post(url, data=params, headers=attempt) as answer:
                assert answer.status == 403
                assert "X-Twilio-Signature" in await answer.text()
        # The inbound webhook is guarded the same way.
        async with provider.post(
            f"{stack.base_url}/api/sms/twilio/inbound",
            data={"From": row.mobile, "Body": "OK", "MessageSid": "SMx"},
        ) as a:
            assert a.status == 403
        assert (await _states(stack, broadcast_id)) == {row.mobile: "sent"}

        # A genuine signature on the same parameters is accepted.
        good = {"X-Twilio-Signature": stack.twilio.sign(url, params)}
        async with provider.post(url, data=params, headers=good) as answer:
            assert answer.status == 204
    assert (await _states(stack, broadcast_id)) == {row.mobile: "failed"}


async def test_late_callbacks_never_move_backwards_and_replies_acknowledge(sms_stack: Any) -> None:
    stack = await sms_stack(reorder_ratio=1.0)  # every final callback before its "sent"
    await stack.contacts(5)
    headers = await stack.login("duty", Role.DUTY_OFFICER)
    response = await stack.client.post(
        "/api/sms/broadcasts",
        json={"text": "请回复1确认", "departments": ["EMERG"]},
        headers=headers,
    )
    broadcast_id = (await response.json())["id"]

    async def delivered() -> Any:
        states = await _states(stack, broadcast_id)
        return set(states.values()) == {"delivered"} and states

    states = await stack.wait_for(delivered, what="all delivered")
    mobile = sorted(states)[0]
    inbound = f"{stack.base_url}/api/sms/twilio/inbound"
    assert await stack.twilio.send_inbound(inbound, mobile, "收到") == 200
    assert await stack.twilio.send_inbound(inbound, sorted(states)[1], "who is this?") == 200
    states = await _states(stack, broadcast_id)
    assert states[mobile] == "acknowledged"
    assert list(states.values()).count("delivered") == 4


async def test_rate_limited_sends_are_retried_and_permanent_errors_are_not(sms_stack: Any) -> None:
    stack = await sms_stack(rate_limit_per_second=20)
    await stack.contacts(60)
    async with stack.ctx.db.session() as session:
        contacts = await service.resolve_audience(session, departments=["EMERG"])
        # The provider refuses a malformed number for good (21211): never retried.
        contacts[0].mobile = "+1234567"
        broadcast = await service.create_broadcast(
            session, body="rate test", created_by="t", contacts=contacts, approval_threshold=0
        )
    stack.ctx.settings.sms_max_in_flight = 64

    async def done() -> Any:
        states = await _states(stack, broadcast.id)
        return all(s in FINAL for s in states.values()) and states

    states = await stack.wait_for(done, within=60, what="all final")
    assert states.pop("+1234567") == "failed"
    assert set(states.values()) == {"delivered"}
    async with stack.ctx.db.session() as session:
        attempts = list(
            await session.scalars(
                select(Recipient.attempts).where(Recipient.broadcast_id == broadcast.id)
            )
        )
    assert max(attempts) > 1  # some were refused with 429 and retried
    assert len(read_log(stack.twilio.config.log_path)) == 59


async def test_approval_schedule_and_cancel(sms_stack: Any) -> None:
    stack = await sms_stack()
    stack.ctx.settings.sms_approval_threshold = 3
    await stack.contacts(5)
    first = await stack.login("duty", Role.DUTY_OFFICER)
    response = await stack.client.post(
        "/api/sms/broadcasts", json={"text": "big", "departments": ["EMERG"]}, headers=first
    )
    big = await response.json()
    assert big["status"] == "pending_approval"
    refused = await stack.client.post(f"/api/sms/broadcasts/{big['id']}/approve", headers=first)
    assert refused.status == 422 and "second" in (await refused.json())["error"]
    second = await stack.login("duty2", Role.DUTY_OFFICER)
    approved = await stack.client.post(f"/api/sms/broadcasts/{big['id']}/approve", headers=second)
    assert (await approved.json())["approved_by"] == "duty2"

    staff = await stack.login("clerk", Role.STAFF)
    forbidden = await stack.client.post(
        "/api/sms/broadcasts", json={"text": "x", "departments": ["EMERG"]}, headers=staff
    )
    assert forbidden.status == 403
    headers = await stack.login("duty")
    later = await stack.client.post(
        "/api/sms/broadcasts",
        json={"text": "later", "mobiles": ["13800000001"], "send_at": "2099-01-01T00:00:00Z"},
        headers=headers,
    )
    scheduled = await later.json()
    assert scheduled["status"] == "scheduled"
    cancel = await stack.client.post(
        f"/api/sms/broadcasts/{scheduled['id']}/cancel", headers=headers
    )
    assert (await cancel.json()) == {"cancelled": 1}
    assert await _states(stack, scheduled["id"]) == {"+8613800000001": "cancelled"}
