"""HTTP API and console page with the embedded defaults (console provider, SQLite)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

from core.context import AppContext
from core.models import Department, Role
from sms.events import AlertPublished

CAP_DOC = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>CN-EMERG-7</identifier><sender>emerg@city.gov.cn</sender>
  <sent>2026-11-21T10:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType>
  <scope>Public</scope>
  <info><language>zh-CN</language><category>Met</category><event>台风</event>
    <urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>
    <headline>台风红色预警</headline><instruction>请留在室内。</instruction>
    <area><areaDesc>沿海各区</areaDesc></area></info>
</alert>"""


async def _officer(ctx: AppContext, client: TestClient, name: str = "duty") -> dict[str, str]:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, "password-123", Role.DUTY_OFFICER)
        session.add(Department(code="EMERG", name="应急管理局"))
    response = await client.post(
        "/api/auth/login", json={"username": name, "password": "password-123"}
    )
    return {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def _wait(check: Any, seconds: float = 20) -> Any:
    for _ in range(int(seconds * 10)):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_compose_preview_send_with_console_provider(
    app_context: AppContext, client: TestClient
) -> None:
    headers = await _officer(app_context, client)
    imported = await client.post(
        "/api/sms/contacts/import",
        headers=headers,
        json={
            "csv": "name,mobile,department,role\n张伟,13800138000,EMERG,leader\n"
            "李娜,13900139000,EMERG,staff\n坏行,999,EMERG,staff\n"
        },
    )
    assert (await imported.json()) == {
        "created": 2,
        "updated": 0,
        "errors": [
            "line 4: '999' is not an 11-digit mobile number; give other countries' numbers with +"
        ],
    }
    template = await client.post(
        "/api/sms/templates",
        headers=headers,
        json={"name": "会议", "body": "请于{{time}}到{{place}}开会"},
    )
    assert template.status == 201
    compose = {
        "template": "会议",
        "variables": {"time": "15:00", "place": "三楼"},
        "departments": ["EMERG"],
    }
    preview = await (await client.post("/api/sms/preview", headers=headers, json=compose)).json()
    assert preview["text"] == "请于15:00到三楼开会"
    assert (preview["encoding"], preview["segments"], preview["recipients"]) == ("UCS-2", 1, 2)
    missing = await client.post(
        "/api/sms/preview", headers=headers, json={**compose, "variables": {"time": "15:00"}}
    )
    assert missing.status == 422 and "place" in (await missing.json())["error"]

    created = await client.post("/api/sms/broadcasts", headers=headers, json=compose)
    assert created.status == 201
    broadcast_id = (await created.json())["id"]

    async def delivered() -> Any:
        progress = await (await client.get(f"/api/sms/broadcasts/{broadcast_id}")).json()
        return progress["counts"]["delivered"] == 2 and progress

    await _wait(delivered)
    log = app_context.settings.path("sms-console.log").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["to"] for line in log) == ["+8613800138000", "+8613900139000"]
    recipients = await (await client.get(f"/api/sms/broadcasts/{broadcast_id}/recipients")).json()
    assert {r["state"] for r in recipients} == {"delivered"}
    history = await (await client.get("/api/sms/broadcasts")).json()
    assert history[0]["id"] == broadcast_id

    for lang, word in (("zh", "编写短信"), ("en", "Compose")):
        page = await client.get("/console/sms", cookies={"lang": lang})
        assert page.status == 200 and word in await page.text()


async def test_cap_import_publishes_and_exports(
    app_context: AppContext, client: TestClient
) -> None:
    headers = await _officer(app_context, client)
    await client.post(
        "/api/sms/contacts",
        headers=headers,
        json={"name": "张伟", "mobile": "13800138000", "department": "EMERG"},
    )
    published: list[AlertPublished] = []

    async def keep(event: AlertPublished) -> None:
        published.append(event)

    await app_context.bus.subscribe(AlertPublished, keep)
    bad = await client.post(
        "/api/sms/cap",
        headers=headers,
        json={"xml": CAP_DOC.replace("Extreme", "Huge"), "departments": ["EMERG"]},
    )
    assert bad.status == 422 and "severity" in (await bad.json())["error"]
    created = await client.post(
        "/api/sms/cap", headers=headers, json={"xml": CAP_DOC, "departments": ["EMERG"]}
    )
    assert created.status == 201, await created.text()
    broadcast = await created.json()
    assert broadcast["body"] == "台风红色预警 请留在室内。"
    await _wait(lambda: asyncio.sleep(0, result=bool(published)))
    assert published[0].identifier == "CN-EMERG-7" and published[0].severity == "Extreme"
    exported = await client.get(f"/api/sms/broadcasts/{broadcast['id']}/cap")
    assert exported.content_type == "application/cap+xml"
    assert "CN-EMERG-7" in await exported.text()


async def test_duty_log_links_incidents_to_broadcasts(
    app_context: AppContext, client: TestClient
) -> None:
    headers = await _officer(app_context, client)
    await client.post(
        "/api/sms/contacts",
        headers=headers,
        json={"name": "张伟", "mobile": "13800138000", "department": "EMERG"},
    )
    incident = await (
        await client.post(
            "/api/sms/duty-log",
            headers=headers,
            json={
                "kind": "incident",
                "title": "城东内涝",
                "happened": "积水30厘米",
                "actions": "通知应急局",
                "outcome": "已排水",
            },
        )
    ).json()
    sent = await client.post(
        "/api/sms/broadcasts",
        headers=headers,
        json={"text": "城东内涝，请绕行", "departments": ["EMERG"], "incident_id": incident["id"]},
    )
    log = await (await client.get("/api/sms/duty-log")).json()
    assert log[0]["title"] == "城东内涝" and log[0]["broadcasts"] == [(await sent.json())["id"]]
