"""The directory's logic on both backends: CSV import by line, edits, registrations, calls."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core import migrations
from core.db import Database
from core.models import Department
from core.state import MemoryState
from voip import csv_import, service
from voip.models import Binding, ClassOfService, Extension

REALM = "unicomm"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await migrations.upgrade_async(database_url)
    database = Database(database_url)
    async with database.session() as session:
        session.add_all(
            [
                Department(code="FIN", name="财政局", name_en="Finance Bureau"),
                Department(code="IT", name="大数据中心", name_en="Big Data Centre"),
            ]
        )
    yield database
    await database.close()


async def numbers(db: Database) -> list[str]:
    async with db.session() as session:
        return list(await session.scalars(select(Extension.number).order_by(Extension.number)))


GOOD_AND_BAD = (
    "\ufeffnumber,name,department,password,class_of_service\r\n"
    "2001,王芳,FIN,s3cret-pass,national\r\n"  # line 2: good
    "20x1,李娜,FIN,s3cret-pass,\r\n"  # line 3: bad number
    "2002,,NOPE,short,\r\n"  # line 4: name, department, password
    '2003,"陈静, 大数据",IT,s3cret-pass,\r\n'  # line 5: good (quoted comma)
    "\r\n"  # line 6: blank, skipped
    "2001,张伟,FIN,s3cret-pass,local\r\n"  # line 7: repeated in the file
    "1001,Zhang Wei,,s3cret-pass,galactic\r\n"  # line 8: existing number, bad class
    "2004,赵六,IT\r\n"  # line 9: missing fields
)


async def test_csv_import_reports_bad_rows_by_line_and_imports_the_rest(db: Database) -> None:
    async with db.session() as session:
        await service.add_extension(
            session, number="1001", name="existing", password="long-enough", realm=REALM
        )
    async with db.session() as session:
        report = await csv_import.import_extensions(session, GOOD_AND_BAD.encode(), realm=REALM)

    assert report.imported == ["2001", "2003"]
    assert report.rows == 7
    assert report.failed_lines == [3, 4, 7, 8, 9]
    by_line = {(e.line, e.field): e for e in report.errors}
    assert by_line[(3, "number")].code == "number_format"
    assert {field for line, field in by_line if line == 4} == {"name", "department", "password"}
    assert by_line[(4, "department")].reason == "no department with code 'NOPE'"
    assert by_line[(7, "number")].reason == "number 2001 already appears on line 2"
    assert by_line[(8, "number")].code == "number_exists"
    assert by_line[(8, "class_of_service")].code == "cos_unknown"
    assert by_line[(9, "row")].reason == "the row has 3 fields, the header has 5"
    assert str(by_line[(3, "number")]) == "line 3: number: must be 2 to 8 digits"

    assert await numbers(db) == ["1001", "2001", "2003"]
    async with db.session() as session:
        views = {v.number: v for v in await service.list_extensions(session)}
        imported = await session.scalar(select(Extension).where(Extension.number == "2003"))
    assert views["2001"] == service.ExtensionView(
        "2001", "王芳", "FIN", ClassOfService.NATIONAL, True
    )
    assert views["2003"].name == "陈静, 大数据" and views["2003"].class_of_service == "internal"
    # Only the digest HA1 values are kept, never the password.
    assert imported is not None
    assert (imported.ha1_md5, imported.ha1_sha256) == service.digest_ha1(
        "2003", REALM, "s3cret-pass"
    )


async def test_csv_without_bom_and_header_in_any_order(db: Database) -> None:
    text = "Password,Number,Department,Name\n0123-secret,3001,,测试\n"
    async with db.session() as session:
        report = await csv_import.import_extensions(session, text.encode(), realm=REALM)
    assert report.ok and report.imported == ["3001"]


@pytest.mark.parametrize(
    ("data", "line", "code"),
    [
        (b"", 0, "file_empty"),
        (b"number,name,department,password\n", 1, "file_no_rows"),
        (b"number,name,password\n2001,x,long-enough\n", 1, "header_columns"),
        (b"number,name,department,password,extra\n", 1, "header_columns"),
        (
            b"number,name,department,password\n2001,ok,,long-enough\n2002,"
            + "王".encode("gbk")
            + b",,long-enough\n",
            3,
            "file_encoding",
        ),
    ],
)
async def test_refused_files_import_nothing(
    db: Database, data: bytes, line: int, code: str
) -> None:
    async with db.session() as session:
        report = await csv_import.import_extensions(session, data, realm=REALM)
    assert [(e.line, e.code) for e in report.errors] == [(line, code)]
    assert report.imported == [] and await numbers(db) == []


async def test_a_failed_flush_leaves_no_row_of_the_file(db: Database) -> None:
    # Another writer adds 4002 between the check and the insert: the whole file rolls back.
    text = "number,name,department,password\n4001,a,,long-enough\n4002,b,,long-enough\n"
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            await csv_import.import_extensions(session, text.encode(), realm=REALM)
            session.add(
                service.new_extension(
                    number="4002",
                    name="racer",
                    password="long-enough",
                    realm=REALM,
                    department_id=None,
                    class_of_service=ClassOfService.INTERNAL,
                )
            )
            await session.flush()
    assert await numbers(db) == []


async def test_edit_checks_everything_before_changing_anything(db: Database) -> None:
    async with db.session() as session:
        await service.add_extension(
            session,
            number="2001",
            name="王芳",
            password="first-pass",
            realm=REALM,
            department_code="FIN",
        )
    with pytest.raises(service.DirectoryError) as refused:
        async with db.session() as session:
            await service.edit_extension(
                session,
                "2001",
                service.ExtensionEdit(name="新名字", department_code="NOPE"),
                realm=REALM,
            )
    assert refused.value.field == "department"
    async with db.session() as session:
        view, changed = await service.edit_extension(
            session,
            "2001",
            service.ExtensionEdit(
                name="新名字",
                department_code=None,
                enabled=False,
                class_of_service=ClassOfService.LOCAL,
                password="second-pass",
            ),
            realm=REALM,
        )
        row = await session.scalar(select(Extension).where(Extension.number == "2001"))
    assert changed == ["class_of_service", "department", "enabled", "name", "password"]
    assert view == service.ExtensionView("2001", "新名字", None, ClassOfService.LOCAL, False)
    assert row is not None and row.ha1_md5 == service.digest_ha1("2001", REALM, "second-pass")[0]
    async with db.session() as session:
        _, unchanged = await service.edit_extension(
            session, "2001", service.ExtensionEdit(name="新名字"), realm=REALM
        )
    assert unchanged == []
    with pytest.raises(service.DirectoryError, match="no extension 9999"):
        async with db.session() as session:
            await service.edit_extension(session, "9999", service.ExtensionEdit(), realm=REALM)


async def test_registrations_are_the_unexpired_bindings(db: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    async with db.session() as session:
        ext = await service.add_extension(
            session, number="2001", name="王芳", password="long-enough", realm=REALM
        )
        for contact, expires in (("sip:2001@10.0.0.5:5062", 300), ("sip:2001@10.0.0.6", -5)):
            session.add(
                Binding(
                    extension_id=ext.id,
                    contact_uri=contact,
                    call_id="c",
                    cseq=1,
                    expires_at=now + dt.timedelta(seconds=expires),
                    transport="udp",
                    source="10.0.0.5:5062",
                    user_agent="pjsua2",
                    node="node-a",
                )
            )
    async with db.session() as session:
        registered = await service.list_registrations(session, now)
        assert await session.scalar(select(func.count()).select_from(Binding)) == 2
    assert [(r.number, r.contact, r.source, r.transport) for r in registered] == [
        ("2001", "sip:2001@10.0.0.5:5062", "10.0.0.5:5062", "udp")
    ]
    assert 299 <= registered[0].expires_in_seconds <= 300
    assert registered[0].expires_at.tzinfo is not None


async def test_live_calls_are_read_from_shared_state() -> None:
    state = MemoryState()
    started = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
    for call_id, minute, call_state in (("b", 5, "ringing"), ("a", 1, "answered")):
        await state.hset(
            service.LIVE_CALLS_KEY,
            call_id,
            json.dumps(
                {
                    "call_id": call_id,
                    "caller": "1001",
                    "callee": "2001",
                    "state": call_state,
                    "started_at": (started + dt.timedelta(minutes=minute)).isoformat(),
                    "answered_at": None,
                    "node": "node-a",
                }
            ),
        )
    await state.hset(service.LIVE_CALLS_KEY, "broken", "{not json")
    calls = await service.live_calls(state)
    assert [(c.call_id, c.state) for c in calls] == [("a", "answered"), ("b", "ringing")]
    assert calls[0].started_at == started + dt.timedelta(minutes=1)
