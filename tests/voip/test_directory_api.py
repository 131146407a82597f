"""The directory over HTTP: JSON API (roles, validation, audit) and the console's forms."""

from __future__ import annotations

import datetime as dt
import json
import re

import aiohttp
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from core.context import AppContext
from core.models import AuditEntry, Department, Role
from voip import service
from voip.models import Binding, CallRecord, Disposition, Extension

PASSWORD = "correct-horse"


async def sign_in(client: TestClient, ctx: AppContext, name: str, role: Role) -> str:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, PASSWORD, role)
        if await session.scalar(select(Department).where(Department.code == "FIN")) is None:
            session.add(Department(code="FIN", name="财政局", name_en="Finance Bureau"))
    response = await client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["csrf_token"]
    return token


async def audit_rows(ctx: AppContext) -> list[tuple[str, str, str]]:
    async with ctx.db.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return [(row.actor, row.action, row.target) for row in rows]


async def test_staff_read_but_may_not_write(client: TestClient, app_context: AppContext) -> None:
    csrf = await sign_in(client, app_context, "clerk", Role.STAFF)
    headers = {"X-CSRF-Token": csrf}
    body = {"number": "2001", "name": "王芳", "password": "s3cret-pass"}
    assert (await client.post("/api/voip/extensions", json=body, headers=headers)).status == 403
    patch = await client.patch("/api/voip/extensions/2001", json={"name": "x"}, headers=headers)
    assert patch.status == 403
    upload = await client.post(
        "/api/voip/extensions/import",
        data=b"number,name,department,password\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert upload.status == 403
    for path in (
        "/api/voip/extensions",
        "/api/voip/registrations",
        "/api/voip/calls",
        "/api/voip/cdr?month=2026-05",
    ):
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())
    assert (
        await client.post("/console/voip/extensions", data={**body, "csrf_token": csrf})
    ).status == 403


async def test_add_edit_remove_with_field_errors_and_audit(
    client: TestClient, app_context: AppContext
) -> None:
    csrf = await sign_in(client, app_context, "ops", Role.OPERATOR)
    headers = {"X-CSRF-Token": csrf}
    bad = await client.post(
        "/api/voip/extensions",
        headers=headers,
        json={"number": "20x1", "name": "", "password": "short"},
    )
    assert bad.status == 422
    fields = {item["field"] for item in (await bad.json())["detail"]}
    assert fields == {"number", "name", "password"}

    body = {"number": "2001", "name": "王芳", "password": "s3cret-pass", "department": "FIN"}
    created = await client.post("/api/voip/extensions", json=body, headers=headers)
    assert created.status == 201, await created.text()
    assert (await created.json())["department"] == "FIN"
    again = await client.post("/api/voip/extensions", json=body, headers=headers)
    assert again.status == 409 and "already exists" in (await again.json())["error"]
    nodept = await client.post(
        "/api/voip/extensions",
        headers=headers,
        json={**body, "number": "2002", "department": "NOPE"},
    )
    assert nodept.status == 422
    assert (await nodept.json())["detail"] == [
        {"field": "department", "message": "no department with code 'NOPE'"}
    ]

    edited = await client.patch(
        "/api/voip/extensions/2001",
        headers=headers,
        json={
            "name": "王芳芳",
            "department": None,
            "class_of_service": "national",
            "enabled": False,
            "password": "another-pass",
        },
    )
    assert edited.status == 200, await edited.text()
    assert await edited.json() == {
        "number": "2001",
        "name": "王芳芳",
        "department": None,
        "class_of_service": "national",
        "enabled": False,
    }
    unknown_field = await client.patch(
        "/api/voip/extensions/2001", headers=headers, json={"nmae": "typo"}
    )
    assert unknown_field.status == 422
    assert (await unknown_field.json())["detail"][0]["field"] == "nmae"
    empty = await client.patch("/api/voip/extensions/2001", headers=headers, json={})
    assert empty.status == 422
    missing = await client.patch("/api/voip/extensions/9999", headers=headers, json={"name": "x"})
    assert missing.status == 404
    assert (await client.get("/api/voip/extensions/2001")).status == 200
    async with app_context.db.session() as session:
        row = await session.scalar(select(Extension).where(Extension.number == "2001"))
        assert row is not None
        assert row.ha1_md5 == service.digest_ha1("2001", "unicomm", "another-pass")[0]
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "voip.extension.edit")
        )
        assert entry is not None and entry.detail["changed"] == [
            "class_of_service",
            "department",
            "enabled",
            "name",
            "password",
        ]
        assert "another-pass" not in json.dumps(entry.detail)

    removed = await client.delete("/api/voip/extensions/2001", headers=headers)
    assert removed.status == 200
    assert (await client.get("/api/voip/extensions/2001")).status == 404
    assert [a for a in await audit_rows(app_context) if a[1].startswith("voip.")] == [
        ("ops", "voip.extension.add", "2001"),
        ("ops", "voip.extension.edit", "2001"),
        ("ops", "voip.extension.remove", "2001"),
    ]


CSV = (
    "\ufeffnumber,name,department,password\n"
    "3001,陈静,FIN,s3cret-pass\n"
    "3x,李,FIN,short\n"
    "3002,赵六,,s3cret-pass\n"
)


async def test_csv_import_by_upload_and_by_body(
    client: TestClient, app_context: AppContext
) -> None:
    csrf = await sign_in(client, app_context, "root", Role.ADMIN)
    form = aiohttp.FormData()
    form.add_field("file", CSV.encode(), filename="staff.csv", content_type="text/csv")
    response = await client.post(
        "/api/voip/extensions/import", data=form, headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 200, await response.text()
    report = await response.json()
    assert report["imported"] == ["3001", "3002"] and report["failed_lines"] == [3]
    assert {(e["line"], e["field"]) for e in report["errors"]} == {(3, "number"), (3, "password")}

    again = await client.post(
        "/api/voip/extensions/import",
        data=CSV.encode(),
        headers={"X-CSRF-Token": csrf, "Content-Type": "text/csv"},
    )
    assert (await again.json())["failed_lines"] == [2, 3, 4]

    refused = await client.post(
        "/api/voip/extensions/import",
        data=b"a,b\n1,2\n",
        headers={"X-CSRF-Token": csrf, "Content-Type": "text/csv"},
    )
    assert refused.status == 422
    assert (await refused.json())["detail"][0]["field"] == "file"
    wrong_type = await client.post(
        "/api/voip/extensions/import",
        data=b"{}",
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert wrong_type.status == 415
    too_big = await client.post(
        "/api/voip/extensions/import",
        data=b"x" * (1024 * 1024 + 1),
        headers={"X-CSRF-Token": csrf, "Content-Type": "text/csv"},
    )
    assert too_big.status == 413

    actions = await audit_rows(app_context)
    assert ("root", "voip.extension.add", "3001") in actions
    assert ("root", "voip.extension.add", "3002") in actions
    assert [a for a in actions if a[1] == "voip.extension.import"][:1] == [
        ("root", "voip.extension.import", "")
    ]


async def test_registrations_calls_and_cdr(client: TestClient, app_context: AppContext) -> None:
    await sign_in(client, app_context, "clerk", Role.STAFF)
    now = dt.datetime.now(dt.UTC)
    async with app_context.db.session() as session:
        ext = await service.add_extension(
            session,
            number="1001",
            name="张伟",
            password="long-enough",
            realm="unicomm",
            department_code="FIN",
        )
        session.add(
            Binding(
                extension_id=ext.id,
                contact_uri="sip:1001@192.0.2.7:5062;transport=tcp",
                call_id="r1",
                cseq=3,
                expires_at=now + dt.timedelta(seconds=600),
                transport="tcp",
                source="192.0.2.7:5062",
                user_agent="baresip 3.0",
                node="node-a",
            )
        )
        session.add(
            CallRecord(
                call_id="cdr-1",
                caller="1001",
                callee="2001",
                caller_department_id=ext.department_id,
                direction="internal",
                started_at=dt.datetime(2026, 5, 3, 8, 0, tzinfo=dt.UTC),
                answered_at=dt.datetime(2026, 5, 3, 8, 0, 4, tzinfo=dt.UTC),
                ended_at=dt.datetime(2026, 5, 3, 8, 1, 4, tzinfo=dt.UTC),
                duration_seconds=60.0,
                disposition=Disposition.ANSWERED,
                hangup_side="caller",
                sip_status=200,
            )
        )
    await app_context.state.hset(
        service.LIVE_CALLS_KEY,
        "live-1",
        json.dumps(
            {
                "call_id": "live-1",
                "caller": "1001",
                "callee": "2001",
                "state": "answered",
                "started_at": now.isoformat(),
                "answered_at": now.isoformat(),
                "node": "node-a",
            }
        ),
    )

    registrations = await (await client.get("/api/voip/registrations")).json()
    assert [(r["number"], r["source"], r["transport"], r["user_agent"]) for r in registrations] == [
        ("1001", "192.0.2.7:5062", "tcp", "baresip 3.0")
    ]
    calls = await (await client.get("/api/voip/calls")).json()
    assert [(c["call_id"], c["state"]) for c in calls] == [("live-1", "answered")]

    records = await (await client.get("/api/voip/cdr?month=2026-05")).json()
    assert [(r["call_id"], r["caller_department"], r["disposition"]) for r in records] == [
        ("cdr-1", "FIN", "answered")
    ]
    assert await (await client.get("/api/voip/cdr?month=2026-06")).json() == []
    bad_month = await client.get("/api/voip/cdr?month=2026-13")
    assert bad_month.status == 422 and (await bad_month.json())["detail"][0]["field"] == "month"
    exported = await client.get("/api/voip/cdr.csv?month=2026-05")
    assert exported.content_type == "text/csv"
    lines = (await exported.text()).splitlines()
    assert lines[0].startswith("call_id,caller,callee,caller_department,callee_department")
    # Times in the city's zone (timezone, Asia/Shanghai by default), with the offset.
    assert lines[1].startswith("cdr-1,1001,2001,FIN,,internal,2026-05-03T16:00:00+08:00")

    page = await (await client.get("/console/voip")).text()
    assert "192.0.2.7:5062" in page and "live-1" in page and "baresip 3.0" in page
    # The live call's start in the city's zone (timezone, Asia/Shanghai by default).
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert local.isoformat(sep=" ", timespec="seconds") in page


async def test_openapi_lists_the_directory_routes(
    client: TestClient, app_context: AppContext
) -> None:
    paths = (await (await client.get("/api/openapi.json")).json())["paths"]
    assert set(paths["/api/voip/extensions/{number}"]) == {"get", "patch", "delete"}
    for path in (
        "/api/voip/extensions/import",
        "/api/voip/registrations",
        "/api/voip/calls",
        "/api/voip/cdr",
        "/api/voip/cdr.csv",
    ):
        assert path in paths
    assert paths["/api/voip/extensions"]["post"]["x-roles"] == ["admin", "operator"]


async def test_console_forms_carry_csrf_and_explain_errors_in_both_languages(
    client: TestClient, app_context: AppContext
) -> None:
    csrf = await sign_in(client, app_context, "ops", Role.OPERATOR)
    page = await (await client.get("/console/voip")).text()
    assert re.search(r'name="csrf_token" value="' + re.escape(csrf), page)
    form = {
        "number": "2001",
        "name": "王芳",
        "department": "FIN",
        "class_of_service": "local",
        "password": "s3cret-pass",
    }
    forged = await client.post("/console/voip/extensions", data=form, allow_redirects=False)
    assert forged.status == 403
    added = await client.post(
        "/console/voip/extensions", data={**form, "csrf_token": csrf}, allow_redirects=False
    )
    assert added.status == 303 and added.headers["Location"] == "/console/voip?added=2001"

    client.session.cookie_jar.update_cookies({"lang": "zh"})
    bad = await client.post(
        "/console/voip/extensions",
        data={**form, "number": "2002", "password": "short", "csrf_token": csrf},
    )
    assert bad.status == 422
    assert "SIP 密码: 至少需要 8 个字符" in await bad.text()
    assert "short" not in await bad.text()
    client.session.cookie_jar.update_cookies({"lang": "en"})
    bad_en = await client.post(
        "/console/voip/extensions", data={**form, "number": "2001", "csrf_token": csrf}
    )
    assert "Number: extension 2001 already exists" in await bad_en.text()

    edited = await client.post(
        "/console/voip/extensions/2001",
        allow_redirects=False,
        data={
            "name": "王芳",
            "department": "",
            "class_of_service": "national",
            "password": "",
            "csrf_token": csrf,
        },
    )
    assert edited.status == 303
    async with app_context.db.session() as session:
        view = await service.get_extension(session, "2001")
    assert (view.department, view.class_of_service, view.enabled) == (None, "national", False)

    upload = aiohttp.FormData()
    upload.add_field("csrf_token", csrf)
    upload.add_field("file", CSV.encode(), filename="staff.csv", content_type="text/csv")
    report = await client.post("/console/voip/import", data=upload)
    assert report.status == 422
    text = await report.text()
    assert "2 extensions imported, 1 rows refused." in text
    assert "must be 2 to 8 digits" in text and 'id="import-report"' in text

    removed = await client.post(
        "/console/voip/extensions/2001/remove", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert removed.status == 303
    actions = [a[1:] for a in await audit_rows(app_context) if a[1].startswith("voip.extension.")]
    assert actions[:2] == [("voip.extension.add", "2001"), ("voip.extension.edit", "2001")]
    assert ("voip.extension.remove", "2001") in actions
