"""Contacts edited and deleted over HTTP: past deliveries stay readable, every change audited."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from core.context import AppContext
from core.models import AuditEntry, Department, Role
from sms.models import DutyShift, GroupMember, Recipient


async def _login(ctx: AppContext, client: TestClient, name: str, role: Role) -> dict[str, str]:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, "password-123", role)
    client.session.cookie_jar.clear()
    response = await client.post(
        "/api/auth/login", json={"username": name, "password": "password-123"}
    )
    assert response.status == 200
    return {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def _audit(ctx: AppContext, action: str) -> list[AuditEntry]:
    async with ctx.db.session() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


async def _delivered(client: TestClient, broadcast_id: int, count: int) -> None:
    for _ in range(200):
        progress = await (await client.get(f"/api/sms/broadcasts/{broadcast_id}")).json()
        if progress["counts"]["delivered"] == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"broadcast {broadcast_id} not delivered: {progress}")


async def test_edit_and_delete_keep_history_and_audit(
    app_context: AppContext, client: TestClient
) -> None:
    async with app_context.db.session() as session:
        session.add(Department(code="EMERG", name="应急管理局"))
    headers = await _login(app_context, client, "duty", Role.DUTY_OFFICER)
    ids: dict[str, int] = {}
    for name, mobile in (("张伟", "13800138000"), ("李娜", "13900139000")):
        added = await client.post(
            "/api/sms/contacts",
            headers=headers,
            json={"name": name, "mobile": mobile, "department": "EMERG"},
        )
        assert added.status == 201, await added.text()
        ids[name] = (await added.json())["id"]
    group = await client.post(
        "/api/sms/groups",
        headers=headers,
        json={"name": "值班", "members": ["13800138000", "13900139000"]},
    )
    group_id = (await group.json())["id"]
    sent = await client.post(
        "/api/sms/broadcasts", headers=headers, json={"text": "演练", "groups": ["值班"]}
    )
    broadcast_id = (await sent.json())["id"]
    await _delivered(client, broadcast_id, 2)

    # Edit: a new number and name; the broadcast still shows what was sent, and to whom.
    edited = await client.put(
        f"/api/sms/contacts/{ids['张伟']}",
        headers=headers,
        json={"name": "张伟（新）", "mobile": "137 0013 7000", "role": "leader", "language": "en"},
    )
    assert edited.status == 200, await edited.text()
    body = await edited.json()
    assert (body["mobile"], body["name"], body["language"]) == (
        "+8613700137000",
        "张伟（新）",
        "en",
    )
    assert body["department_id"] is None and body["active"] is True
    fetched = await (await client.get(f"/api/sms/contacts/{ids['张伟']}")).json()
    assert fetched["mobile"] == "+8613700137000"

    # A refused edit (the number belongs to someone else) changes nothing.
    taken = await client.put(
        f"/api/sms/contacts/{ids['张伟']}",
        headers=headers,
        json={"name": "张伟", "mobile": "13900139000"},
    )
    assert taken.status == 422 and "already exists" in (await taken.json())["error"]
    assert (await (await client.get(f"/api/sms/contacts/{ids['张伟']}")).json())[
        "name"
    ] == "张伟（新）"
    missing = await client.put(
        "/api/sms/contacts/9999", headers=headers, json={"name": "x", "mobile": "13600136000"}
    )
    assert missing.status == 404

    # Group membership: set to one person; the other stays a contact.
    members = await client.put(
        f"/api/sms/groups/{group_id}/members", headers=headers, json={"members": ["13900139000"]}
    )
    assert members.status == 200, await members.text()
    assert [m["mobile"] for m in (await members.json())["members"]] == ["+8613900139000"]
    unknown = await client.put(
        f"/api/sms/groups/{group_id}/members",
        headers=headers,
        json={"members": ["13900139000", "13500135000"]},
    )
    assert unknown.status == 404 and "13500135000" in (await unknown.json())["error"]
    listed = await (await client.get(f"/api/sms/groups/{group_id}/members")).json()
    assert [m["name"] for m in listed["members"]] == ["李娜"]

    # Delete: memberships and shifts go; the delivery rows keep the name and number.
    await client.post(
        "/api/sms/shifts",
        headers=headers,
        json={
            "roster": "夜班",
            "mobile": "13900139000",
            "starts_at": "2026-11-21T00:00:00+08:00",
            "ends_at": "2026-11-21T08:00:00+08:00",
        },
    )
    deleted = await client.delete(f"/api/sms/contacts/{ids['李娜']}", headers=headers)
    assert deleted.status == 200, await deleted.text()
    assert await deleted.json() == {
        "id": ids["李娜"],
        "name": "李娜",
        "mobile": "+8613900139000",
        "groups": 1,
        "shifts": 1,
        "deliveries": 1,
    }
    assert (await client.get(f"/api/sms/contacts/{ids['李娜']}")).status == 404
    assert (await client.delete(f"/api/sms/contacts/{ids['李娜']}", headers=headers)).status == 404
    contacts = await (await client.get("/api/sms/contacts")).json()
    assert [c["name"] for c in contacts] == ["张伟（新）"]
    rows = await (await client.get(f"/api/sms/broadcasts/{broadcast_id}/recipients")).json()
    assert sorted((r["name"], r["mobile"], r["state"]) for r in rows) == [
        ("张伟", "+8613800138000", "delivered"),
        ("李娜", "+8613900139000", "delivered"),
    ]
    async with app_context.db.session() as session:
        links = dict((await session.execute(select(Recipient.mobile, Recipient.contact_id))).all())
        assert links == {"+8613800138000": ids["张伟"], "+8613900139000": None}
        assert not (await session.scalars(select(GroupMember))).all()
        assert not (await session.scalars(select(DutyShift))).all()

    # Every change has its audit row, with what changed.
    (edit,) = await _audit(app_context, "sms.contact.edit")
    assert edit.actor == "duty" and edit.target == "+8613700137000"
    assert edit.detail["changed"]["mobile"] == ["+8613800138000", "+8613700137000"]
    assert set(edit.detail["changed"]) == {"name", "mobile", "department_id", "role", "language"}
    (gone,) = await _audit(app_context, "sms.contact.delete")
    assert gone.target == "+8613900139000" and gone.detail["name"] == "李娜"
    assert gone.detail["deliveries_kept"] == 1
    (membership,) = await _audit(app_context, "sms.group.members")
    assert membership.detail == {"added": [], "removed": ["+8613700137000"]}


async def test_edits_need_a_writer_role_and_the_csrf_token(
    app_context: AppContext, client: TestClient
) -> None:
    headers = await _login(app_context, client, "op", Role.OPERATOR)
    added = await client.post(
        "/api/sms/contacts", headers=headers, json={"name": "王芳", "mobile": "13600136000"}
    )
    contact_id = (await added.json())["id"]
    change: dict[str, Any] = {"name": "王芳", "mobile": "13600136001", "active": False}
    no_token = await client.put(f"/api/sms/contacts/{contact_id}", json=change)
    assert no_token.status == 403
    assert (await client.delete(f"/api/sms/contacts/{contact_id}")).status == 403
    ok = await client.put(f"/api/sms/contacts/{contact_id}", headers=headers, json=change)
    assert ok.status == 200 and (await ok.json())["active"] is False

    staff = await _login(app_context, client, "clerk", Role.STAFF)
    refused = await client.put(f"/api/sms/contacts/{contact_id}", headers=staff, json=change)
    assert refused.status == 403
    assert (await client.delete(f"/api/sms/contacts/{contact_id}", headers=staff)).status == 403
    assert (await client.get(f"/api/sms/contacts/{contact_id}")).status == 200
    assert not await _audit(app_context, "sms.contact.delete")


async def test_the_escalation_extension_is_kept_unless_given(
    app_context: AppContext, client: TestClient
) -> None:
    headers = await _login(app_context, client, "op", Role.OPERATOR)
    added = await client.post(
        "/api/sms/contacts",
        headers=headers,
        json={"name": "王芳", "mobile": "13600136000", "extension": "8001"},
    )
    contact_id = (await added.json())["id"]
    url = f"/api/sms/contacts/{contact_id}"
    kept = await client.put(url, headers=headers, json={"name": "王芳", "mobile": "13600136000"})
    assert (await kept.json())["extension"] == "8001"
    bad = await client.put(
        url, headers=headers, json={"name": "王芳", "mobile": "13600136000", "extension": "8x"}
    )
    assert bad.status == 422 and "extension" in (await bad.json())["error"]
    changed = await client.put(
        url, headers=headers, json={"name": "王芳", "mobile": "13600136000", "extension": "8002"}
    )
    assert (await changed.json())["extension"] == "8002"
    cleared = await client.put(
        url, headers=headers, json={"name": "王芳", "mobile": "13600136000", "extension": ""}
    )
    assert (await cleared.json())["extension"] == ""
