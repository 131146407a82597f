"""Directory: E.164 numbers, CSV import by line, groups by department/role, rosters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from support.processes import run_cli

from core.context import AppContext
from core.models import Department
from sms import service
from sms.csv_import import CsvFormatError, parse_contacts
from sms.phone import InvalidNumber, normalise_mobile


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("+86-138-0013-8000", "+8613800138000"),
        ("0086 13800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("+44 7700 900123", "+447700900123"),
    ],
)
def test_mobiles_are_normalised_to_e164(raw: str, expected: str) -> None:
    assert normalise_mobile(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "12345", "1380013800", "23800138000", "+86 10 1234 5678", "138-0013-800x", "+0123456789"],
)
def test_invalid_mobiles_are_refused(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalise_mobile(raw)


CSV = (
    "\ufeffname,mobile,department,role,language\n"
    "张伟,13800138000,EMERG,leader,zh\n"
    "李娜,not-a-number,EMERG,staff,zh\n"
    "Wang Fang,+447700900123,FIN,staff,en\n"
    ",13900139000,FIN,staff,zh\n"
    "陈静,138 0013 8000,IT,staff,zh\n"
    "赵强,13700137000,NOPE,staff,zh\n"
    "刘洋,13600136000,,staff,fr\n"
)


def test_csv_parse_reports_bad_rows_by_line() -> None:
    parsed = parse_contacts(CSV.encode("utf-8"))
    assert [row.name for row in parsed.rows] == ["张伟", "Wang Fang", "赵强"]
    lines = {error.line: error.message for error in parsed.errors}
    assert set(lines) == {3, 5, 6, 8}
    assert "not-a-number" in lines[3]
    assert "name is empty" in lines[5]
    assert "line 2" in lines[6]  # the same mobile twice
    assert "language" in lines[8]


def test_csv_without_required_header_is_refused() -> None:
    with pytest.raises(CsvFormatError, match="mobile"):
        parse_contacts(b"name,phone\nx,13800138000\n")
    with pytest.raises(CsvFormatError, match="UTF-8"):
        parse_contacts("name,mobile,department,role\n张伟".encode("gbk"))


async def _departments(ctx: AppContext) -> None:
    async with ctx.db.session() as session:
        for code in ("EMERG", "FIN", "IT"):
            session.add(Department(code=code, name=f"{code} bureau"))


async def test_import_groups_and_rosters(app_context: AppContext) -> None:
    await _departments(app_context)
    async with app_context.db.session() as session:
        report = await service.import_contacts(session, CSV.encode("utf-8"))
    assert (report.created, report.updated) == (2, 0)
    assert [e.line for e in report.errors] == [3, 5, 6, 7, 8]
    assert "NOPE" in str(report.errors[3])

    async with app_context.db.session() as session:
        await service.add_contact(
            session, name="孙丽", mobile="13500135000", department="EMERG", role="staff"
        )
        await service.add_group(session, "emerg-all", department="EMERG")
        await service.add_group(session, "leaders", role="leader")
        await service.add_group(session, "hand-picked", members=["+447700900123"])
        await service.add_group(session, "night", roster="night-duty")
        now = dt.datetime.now(dt.UTC)
        await service.add_shift(
            session,
            "night-duty",
            "13500135000",
            now - dt.timedelta(hours=1),
            now + dt.timedelta(hours=7),
        )
        await service.add_shift(
            session,
            "night-duty",
            "13800138000",
            now + dt.timedelta(hours=7),
            now + dt.timedelta(hours=15),
        )

    async def names(**audience: list[str]) -> list[str]:
        async with app_context.db.session() as session:
            return sorted(c.name for c in await service.resolve_audience(session, **audience))

    assert await names(groups=["emerg-all"]) == ["孙丽", "张伟"]
    assert await names(groups=["leaders"]) == ["张伟"]
    assert await names(groups=["hand-picked"]) == ["Wang Fang"]
    assert await names(groups=["night"]) == ["孙丽"]
    assert await names(departments=["FIN"], groups=["leaders", "emerg-all"]) == [
        "Wang Fang",
        "孙丽",
        "张伟",
    ]
    with pytest.raises(service.NotFound):
        await names(groups=["nobody"])

    # Importing again updates instead of duplicating.
    async with app_context.db.session() as session:
        again = await service.import_contacts(session, CSV.encode("utf-8"))
    assert (again.created, again.updated) == (0, 2)


def test_cli_import_reports_bad_line(tmp_path: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "data"\n')
    assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path).returncode == 0
    run_cli("--config", str(config), "dept", "add", "EMERG", "--name", "应急管理局", cwd=tmp_path)
    csv_file = tmp_path / "staff.csv"
    csv_file.write_text(
        "name,mobile,department,role\n张伟,13800138000,EMERG,leader\n李娜,12345,EMERG,staff\n",
        encoding="utf-8-sig",
    )
    result = run_cli("--config", str(config), "sms", "import", str(csv_file), cwd=tmp_path)
    assert result.returncode == 1
    assert "imported 1 new" in result.stdout
    assert "staff.csv: line 3:" in result.stdout and "12345" in result.stdout
