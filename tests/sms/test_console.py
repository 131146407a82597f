"""The sms console's forms over HTTP: contacts and groups, CAP 1.2, the duty log (zh and en)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from core.context import AppContext
from core.models import AuditEntry, Department, Role
from sms import cap
from sms.models import Broadcast, Contact, DutyLogEntry, GroupMember

CAP_DOC = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>CN-EMERG-9</identifier><sender>emerg@city.gov.cn</sender>
  <sent>2026-11-21T10:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType>
  <scope>Public</scope>
  <info><language>zh-CN</language><category>Met</category><event>暴雨</event>
    <urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>
    <headline>暴雨橙色预警</headline><instruction>请避免外出。</instruction>
    <area><areaDesc>全市</areaDesc></area></info>
</alert>"""


async def _sign_in(ctx: AppContext, client: TestClient, name: str, role: Role) -> str:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, "password-123", role)
    client.session.cookie_jar.clear()
    response = await client.post(
        "/api/auth/login", json={"username": name, "password": "password-123"}
    )
    assert response.status == 200
    return str((await response.json())["csrf_token"])


async def _count(ctx: AppContext, model: Any, *where: Any) -> int:
    async with ctx.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def _actions(ctx: AppContext) -> list[str]:
    async with ctx.db.session() as session:
        return [
            a for (a,) in await session.execute(select(AuditEntry.action).order_by(AuditEntry.id))
        ]


async def _page(client: TestClient, path: str, lang: str) -> str:
    response = await client.get(path, cookies={"lang": lang})
    assert response.status == 200, (path, lang, response.status)
    return await response.text()


async def _post(client: TestClient, path: str, data: Any) -> Any:
    return await client.post(path, data=data, allow_redirects=False)


async def test_contacts_and_groups_in_the_console(
    app_context: AppContext, client: TestClient
) -> None:
    async with app_context.db.session() as session:
        session.add(Department(code="EMERG", name="应急管理局", name_en="Emergency"))
    token = await _sign_in(app_context, client, "op", Role.OPERATOR)
    for lang, words in (
        ("zh", ("通讯录与群组", "添加联系人")),
        ("en", ("Contacts and groups", "Add a contact")),
    ):
        text = await _page(client, "/console/sms/directory", lang)
        assert all(word in text for word in words), lang
    # The service's tabs lead to the new pages.
    main = await _page(client, "/console/sms", "en")
    assert all(p in main for p in ('href="/console/sms/directory"', 'href="/console/sms/cap"'))

    contact = {"name": "张伟", "mobile": "138 0013 8000", "department": "EMERG", "role": "leader"}
    forged = await _post(client, "/console/sms/directory/contacts", {**contact, "csrf_token": "x"})
    assert forged.status == 403
    assert await _count(app_context, Contact) == 0
    added = await _post(client, "/console/sms/directory/contacts", {**contact, "csrf_token": token})
    assert added.status == 303, await added.text()
    await _post(
        client,
        "/console/sms/directory/contacts",
        {"name": "李娜", "mobile": "13900139000", "csrf_token": token},
    )
    bad = await client.post(
        "/console/sms/directory/contacts",
        data={"name": "坏号码", "mobile": "12345", "csrf_token": token},
        cookies={"lang": "zh"},
    )
    assert bad.status == 422
    assert "联系人未保存" in await bad.text() and await _count(app_context, Contact) == 2
    async with app_context.db.session() as session:
        zhang = await session.scalar(select(Contact).where(Contact.name == "张伟"))
        assert zhang is not None and zhang.mobile == "+8613800138000"

    # Edit: the page shows the form, a refused change says why and keeps the contact.
    edit_page = await _page(client, f"/console/sms/directory/contacts/{zhang.id}", "en")
    assert "Edit contact" in edit_page and 'value="+8613800138000"' in edit_page
    clash = await _post(
        client,
        f"/console/sms/directory/contacts/{zhang.id}",
        {"name": "张伟", "mobile": "13900139000", "csrf_token": token, "active": "on"},
    )
    assert clash.status == 422 and "already exists" in await clash.text()
    saved = await _post(
        client,
        f"/console/sms/directory/contacts/{zhang.id}",
        {"name": "张伟", "mobile": "13700137000", "department": "EMERG", "csrf_token": token},
    )
    assert saved.status == 303
    async with app_context.db.session() as session:
        changed = await session.get(Contact, zhang.id)
        assert changed is not None and changed.mobile == "+8613700137000"
        assert changed.active is False  # the box was left unticked

    # Groups: a static group from the form, then its members changed on its page.
    group = await _post(
        client,
        "/console/sms/directory/groups",
        {"name": "防汛", "members": "13700137000\n13900139000", "csrf_token": token},
    )
    assert group.status == 303
    listing = await _page(client, "/console/sms/directory", "zh")
    group_id = int(re.search(r'data-group="(\d+)"', listing).group(1))  # type: ignore[union-attr]
    members_page = await _page(client, f"/console/sms/directory/groups/{group_id}", "zh")
    assert "编辑成员" not in members_page and "+8613900139000" in members_page
    unknown = await _post(
        client,
        f"/console/sms/directory/groups/{group_id}",
        {"members": "13900139000, 13500135000", "csrf_token": token},
    )
    assert unknown.status == 422 and "13500135000" in await unknown.text()
    assert await _count(app_context, GroupMember) == 2
    members = await _post(
        client,
        f"/console/sms/directory/groups/{group_id}",
        {"members": "13900139000", "csrf_token": token},
    )
    assert members.status == 303 and await _count(app_context, GroupMember) == 1

    # Delete from the console: audited, and the listing no longer has the contact.
    deleted = await _post(
        client, f"/console/sms/directory/contacts/{zhang.id}/delete", {"csrf_token": token}
    )
    assert deleted.status == 303
    after = await client.get(deleted.headers["Location"], cookies={"lang": "en"})
    text = await after.text()
    assert "+8613700137000" in text and "stay in the history" in text
    assert 'data-mobile="+8613700137000"' not in text
    actions = [a for a in await _actions(app_context) if a.startswith("sms.")]
    assert actions == [
        "sms.contact.add",
        "sms.contact.add",
        "sms.contact.edit",
        "sms.group.add",
        "sms.group.members",
        "sms.contact.delete",
    ]

    # Staff may look but not change.
    staff_token = await _sign_in(app_context, client, "clerk", Role.STAFF)
    text = await _page(client, "/console/sms/directory", "en")
    assert "Add a contact" not in text
    refused = await _post(
        client,
        "/console/sms/directory/contacts",
        {"name": "x", "mobile": "13600136000", "csrf_token": staff_token},
    )
    assert refused.status == 403


async def test_cap_pages_compose_import_and_export(
    app_context: AppContext, client: TestClient
) -> None:
    async with app_context.db.session() as session:
        session.add(Department(code="EMERG", name="应急管理局"))
        session.add(Contact(name="张伟", mobile="+8613800138000", department_id=1, active=True))
    token = await _sign_in(app_context, client, "duty", Role.DUTY_OFFICER)
    for lang, words in (
        ("zh", ("以 CAP 1.2 编写预警", "导入 CAP 1.2 文件", "将发送批次导出为 CAP 1.2")),
        ("en", ("Compose an alert as CAP 1.2", "Import a CAP 1.2 file", "Export a broadcast")),
    ):
        text = await _page(client, "/console/sms/cap", lang)
        assert all(word in text for word in words), lang

    # A bad file: a clear error on the page, the XML kept, nothing sent or recorded.
    form = FormData()
    form.add_field("csrf_token", token)
    form.add_field("departments", "EMERG")
    form.add_field(
        "file",
        CAP_DOC.replace("Severe", "Huge").encode(),
        filename="alert.xml",
        content_type="application/xml",
    )
    bad = await client.post("/console/sms/cap/import", data=form, cookies={"lang": "zh"})
    assert bad.status == 422
    text = await bad.text()
    assert "CAP 1.2 文档无效，未发送任何短信" in text and "&lt;severity&gt; must be one of" in text
    assert "Huge" in text  # the submitted document is shown again to be fixed
    not_xml = await _post(
        client,
        "/console/sms/cap/import",
        {"csrf_token": token, "xml": "<alert>", "departments": "EMERG"},
    )
    assert not_xml.status == 422 and "not well-formed XML" in await not_xml.text()
    empty = await _post(client, "/console/sms/cap/import", {"csrf_token": token, "xml": ""})
    assert empty.status == 422
    nobody = await _post(
        client, "/console/sms/cap/import", {"csrf_token": token, "xml": CAP_DOC, "groups": "无"}
    )
    assert nobody.status == 422 and "no group" in await nobody.text()
    assert await _count(app_context, Broadcast) == 0
    assert await _count(app_context, AuditEntry, AuditEntry.action == "sms.cap.import") == 0

    # A good file is sent and kept as imported; its export is the same document.
    form = FormData()
    form.add_field("csrf_token", token)
    form.add_field("departments", "EMERG")
    form.add_field("file", CAP_DOC.encode(), filename="alert.xml")
    sent = await client.post("/console/sms/cap/import", data=form, allow_redirects=False)
    assert sent.status == 303, await sent.text()
    imported_id = int(sent.headers["Location"].rsplit("#b", 1)[1])
    exported = await client.get(f"/console/sms/broadcasts/{imported_id}/cap")
    assert exported.status == 200 and exported.content_type == "application/cap+xml"
    assert "attachment" in exported.headers["Content-Disposition"]
    assert await exported.text() == CAP_DOC

    # Composed from the form: a valid CAP document, the text is headline + instruction.
    bad_compose = await _post(
        client,
        "/console/sms/cap/compose",
        {
            "csrf_token": token,
            "event": "",
            "urgency": "Immediate",
            "severity": "Severe",
            "certainty": "Observed",
            "category": "Met",
            "departments": "EMERG",
        },
    )
    assert bad_compose.status == 422 and "&lt;event&gt; is required" in await bad_compose.text()
    composed = await _post(
        client,
        "/console/sms/cap/compose",
        {
            "csrf_token": token,
            "event": "Typhoon",
            "headline": "Typhoon red warning",
            "instruction": "Stay indoors.",
            "area": "Coast",
            "urgency": "Immediate",
            "severity": "Extreme",
            "certainty": "Observed",
            "category": "Met",
            "status": "Exercise",
            "language": "en",
            "departments": "EMERG",
        },
    )
    assert composed.status == 303, await composed.text()
    composed_id = int(composed.headers["Location"].rsplit("#b", 1)[1])
    async with app_context.db.session() as session:
        broadcast = await session.get(Broadcast, composed_id)
        assert broadcast is not None and broadcast.body == "Typhoon red warning Stay indoors."
    document = await (await client.get(f"/console/sms/broadcasts/{composed_id}/cap")).read()
    alert = cap.parse(document)
    assert (alert.status, alert.info[0].severity, alert.info[0].area) == (
        "Exercise",
        "Extreme",
        "Coast",
    )
    listing = await _page(client, "/console/sms/cap", "en")
    assert f'href="/console/sms/broadcasts/{composed_id}/cap"' in listing
    assert await _count(app_context, AuditEntry, AuditEntry.action == "sms.cap.import") == 2

    # A plain broadcast exports as a CAP document built from it.
    plain = await client.post(
        "/api/sms/broadcasts",
        headers={"X-CSRF-Token": token},
        json={"text": "停电通知", "departments": ["EMERG"]},
    )
    plain_id = (await plain.json())["id"]
    built = cap.parse(await (await client.get(f"/console/sms/broadcasts/{plain_id}/cap")).read())
    assert built.identifier == f"unicomm-sms-{plain_id}" and built.info[0].description == "停电通知"
    assert (await client.get("/console/sms/broadcasts/999/cap")).status == 404


async def test_duty_log_page_records_incidents_linked_to_broadcasts(
    app_context: AppContext, client: TestClient
) -> None:
    async with app_context.db.session() as session:
        session.add(Department(code="EMERG", name="应急管理局"))
        session.add(Contact(name="张伟", mobile="+8613800138000", department_id=1, active=True))
    token = await _sign_in(app_context, client, "duty", Role.DUTY_OFFICER)
    sent = await client.post(
        "/api/sms/broadcasts",
        headers={"X-CSRF-Token": token},
        json={"text": "城东内涝，请绕行", "departments": ["EMERG"]},
    )
    broadcast_id = (await sent.json())["id"]
    for lang, words in (
        ("zh", ("值班日志", "新建日志", "处置措施")),
        ("en", ("Duty log", "New entry", "What was done")),
    ):
        text = await _page(client, "/console/sms/duty-log", lang)
        assert all(word in text for word in words), lang

    # A link to a broadcast that does not exist refuses the whole entry.
    refused = await _post(
        client,
        "/console/sms/duty-log",
        {"csrf_token": token, "kind": "incident", "title": "城东内涝", "broadcasts": "999"},
    )
    assert refused.status == 422 and "999" in await refused.text()
    assert await _count(app_context, DutyLogEntry) == 0
    added = await _post(
        client,
        "/console/sms/duty-log",
        {
            "csrf_token": token,
            "kind": "incident",
            "title": "城东内涝",
            "happened": "积水30厘米",
            "actions": "通知应急局",
            "broadcasts": f"#{broadcast_id}",
        },
    )
    assert added.status == 303, await added.text()
    await _post(
        client,
        "/console/sms/duty-log",
        {"csrf_token": token, "kind": "shift", "title": "夜班交接", "happened": "无异常"},
    )
    log = await (await client.get("/api/sms/duty-log")).json()
    incident = next(e for e in log if e["kind"] == "incident")
    assert incident["broadcasts"] == [broadcast_id] and incident["author"] == "duty"
    text = await _page(client, "/console/sms/duty-log", "zh")
    assert f'data-broadcast="{broadcast_id}"' in text and "交接班记录" in text

    # The outcome is written later, on the entry's own page.
    entry_page = await _page(client, f"/console/sms/duty-log/{incident['id']}", "en")
    assert "积水30厘米" in entry_page and "Outcome" in entry_page
    done = await _post(
        client,
        f"/console/sms/duty-log/{incident['id']}",
        {
            "csrf_token": token,
            "title": "城东内涝",
            "happened": "积水30厘米",
            "actions": "通知应急局；抽水",
            "outcome": "已排水",
        },
    )
    assert done.status == 303
    log = await (await client.get("/api/sms/duty-log")).json()
    incident = next(e for e in log if e["kind"] == "incident")
    assert (incident["outcome"], incident["broadcasts"]) == ("已排水", [broadcast_id])
    actions = await _actions(app_context)
    assert actions.count("sms.dutylog.add") == 2 and actions.count("sms.dutylog.edit") == 1
