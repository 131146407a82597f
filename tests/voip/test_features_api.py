"""The feature routes: call settings, ring groups, voicemail, with their roles and audit."""

from __future__ import annotations

import datetime as dt

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from core.context import AppContext
from core.models import AuditEntry, Role
from voip import service
from voip.features.models import VoicemailRow

PASSWORD = "correct-horse"


async def sign_in(client: TestClient, ctx: AppContext, name: str, role: Role) -> dict[str, str]:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, PASSWORD, role)
    response = await client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def add_extension(ctx: AppContext, number: str) -> None:
    async with ctx.db.session() as session:
        await service.add_extension(
            session, number=number, name=f"Phone {number}", password="sip-password-1",
            realm=ctx.settings.sip_realm, department_code=None,
        )  # fmt: skip


async def test_call_settings_are_read_changed_and_audited(
    client: TestClient, app_context: AppContext
) -> None:
    await add_extension(app_context, "2001")
    headers = await sign_in(client, app_context, "admin", Role.ADMIN)
    path = "/api/voip/extensions/2001/call-settings"
    shown = await (await client.get(path)).json()
    assert shown["dnd"] is False and shown["voicemail"] is True
    assert shown["voicemail_pin_set"] is False and "voicemail_pin_hash" not in shown
    body = {"forward_no_answer": "2002", "no_answer_seconds": 10, "voicemail_pin": "2468"}
    changed = await client.patch(path, json=body, headers=headers)
    assert changed.status == 200, await changed.text()
    shown = await changed.json()
    assert shown["forward_no_answer"] == "2002" and shown["no_answer_seconds"] == 10
    assert shown["voicemail_pin_set"] is True
    to_itself = await client.patch(path, json={"forward_always": "2001"}, headers=headers)
    assert to_itself.status == 422
    short_pin = await client.patch(path, json={"voicemail_pin": "12"}, headers=headers)
    assert short_pin.status == 422
    missing = await client.patch(
        "/api/voip/extensions/2999/call-settings", json={"dnd": True}, headers=headers
    )
    assert missing.status == 404
    async with app_context.db.session() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "voip.call_settings.change")
        )
    assert entry is not None and entry.target == "2001"
    assert entry.detail["changed"] == ["forward_no_answer", "no_answer_seconds", "voicemail_pin"]


async def test_staff_read_but_do_not_change(client: TestClient, app_context: AppContext) -> None:
    await add_extension(app_context, "2001")
    headers = await sign_in(client, app_context, "clerk", Role.STAFF)
    path = "/api/voip/extensions/2001/call-settings"
    assert (await client.get(path)).status == 200
    assert (await client.patch(path, json={"dnd": True}, headers=headers)).status == 403
    group = {"name": "Desk", "members": ["2001"]}
    assert (
        await client.put("/api/voip/ring-groups/600", json=group, headers=headers)
    ).status == 403


async def test_ring_groups_and_voicemail_routes(
    client: TestClient, app_context: AppContext
) -> None:
    headers = await sign_in(client, app_context, "admin", Role.ADMIN)
    group = {"name": "服务台 Help desk", "strategy": "ordered", "members": ["2001", "2002"]}
    saved = await client.put("/api/voip/ring-groups/600", json=group, headers=headers)
    assert saved.status == 200, await saved.text()
    listed = await (await client.get("/api/voip/ring-groups")).json()
    assert listed == [
        {
            "number": "600",
            "name": "服务台 Help desk",
            "strategy": "ordered",
            "members": ["2001", "2002"],
            "ring_seconds": 15,
        }
    ]
    bad = {"name": "x", "members": ["20a1"]}
    assert (await client.put("/api/voip/ring-groups/601", json=bad, headers=headers)).status == 422
    assert (await client.delete("/api/voip/ring-groups/600", headers=headers)).status == 200
    assert (await client.delete("/api/voip/ring-groups/600", headers=headers)).status == 404
    assert await (await client.get("/api/voip/voicemail/2001")).json() == []
    gone = await client.delete("/api/voip/voicemail/messages/99", headers=headers)
    assert gone.status == 404
    assert (await client.get("/api/voip/voicemail/messages/x/audio")).status == 404
    # The console shows a message's time in the city's zone (timezone), with its offset.
    async with app_context.db.session() as session:
        session.add(
            VoicemailRow(
                mailbox="2001",
                caller="1001",
                created_at=dt.datetime(2026, 10, 31, 16, 30, tzinfo=dt.UTC),
                path="none.wav",
            )
        )
    page = await (await client.get("/console/voip/features")).text()
    assert "2026-11-01 00:30:00+08:00" in page
