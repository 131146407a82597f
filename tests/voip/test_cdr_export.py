"""``unicomm cdr export``: a month's call records as CSV, straight from the database."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path

from support.processes import run_cli

from core.db import Database
from core.models import Department
from voip.models import CallRecord, Disposition

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 5) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


async def insert_records(url: str) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            fin = Department(code="FIN", name="财政局")
            it = Department(code="IT", name="大数据中心")
            session.add_all([fin, it])
            await session.flush()
            session.add_all(
                [
                    CallRecord(
                        call_id="a@1",
                        caller="2001",
                        callee="3001",
                        caller_department_id=fin.id,
                        callee_department_id=it.id,
                        direction="internal",
                        started_at=at(3, 9),
                        answered_at=at(3, 9, 0, 4),
                        ended_at=at(3, 9, 2, 4),
                        duration_seconds=120.0,
                        disposition=Disposition.ANSWERED,
                        hangup_side="callee",
                        sip_status=200,
                    ),
                    CallRecord(
                        call_id="b@1",
                        caller="3001",
                        callee="2002",
                        caller_department_id=it.id,
                        direction="internal",
                        started_at=at(31, 23, 59, 59),
                        ended_at=at(1, 0, 0, 20, month=6),
                        duration_seconds=0.0,
                        disposition=Disposition.BUSY,
                        hangup_side="",
                        sip_status=486,
                    ),
                    # Outside May: April's last second and June's first.
                    CallRecord(
                        call_id="c@1",
                        caller="2001",
                        callee="2002",
                        direction="internal",
                        started_at=at(30, 23, 59, 59, month=4),
                        ended_at=at(1, 0, month=5),
                        disposition=Disposition.NO_ANSWER,
                        sip_status=None,
                    ),
                    # Answered at 00:30 on 1 November in Shanghai: October's call in UTC.
                    CallRecord(
                        call_id="e@1",
                        caller="2001",
                        callee="02112345678",
                        caller_department_id=fin.id,
                        direction="outbound",
                        started_at=at(31, 16, 29, 55, month=10),
                        answered_at=at(31, 16, 30, month=10),
                        ended_at=at(31, 16, 31, month=10),
                        duration_seconds=60.0,
                        disposition=Disposition.ANSWERED,
                        hangup_side="caller",
                        sip_status=200,
                    ),
                    CallRecord(
                        call_id="d@1",
                        caller="2001",
                        callee="2002",
                        direction="internal",
                        started_at=at(1, 0, month=6),
                        ended_at=at(1, 0, 1, month=6),
                        disposition=Disposition.CANCELLED,
                        sip_status=487,
                    ),
                ]
            )
    finally:
        await db.close()


def test_cdr_export_writes_the_month_as_csv(tmp_path: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\ntimezone = "UTC"\n')
    assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path).returncode == 0
    asyncio.run(insert_records(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'unicomm.db'}"))

    printed = run_cli("--config", str(config), "cdr", "export", "--month", "2026-05", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    rows = list(csv.DictReader(io.StringIO(printed.stdout)))
    assert list(rows[0]) == [
        "call_id",
        "caller",
        "callee",
        "caller_department",
        "callee_department",
        "direction",
        "started_at",
        "answered_at",
        "ended_at",
        "duration_seconds",
        "disposition",
        "hangup_side",
        "sip_status",
    ]
    assert rows == [
        {
            "call_id": "a@1",
            "caller": "2001",
            "callee": "3001",
            "caller_department": "FIN",
            "callee_department": "IT",
            "direction": "internal",
            "started_at": "2026-05-03T09:00:00+00:00",
            "answered_at": "2026-05-03T09:00:04+00:00",
            "ended_at": "2026-05-03T09:02:04+00:00",
            "duration_seconds": "120.0",
            "disposition": "answered",
            "hangup_side": "callee",
            "sip_status": "200",
        },
        {
            "call_id": "b@1",
            "caller": "3001",
            "callee": "2002",
            "caller_department": "IT",
            "callee_department": "",
            "direction": "internal",
            "started_at": "2026-05-31T23:59:59+00:00",
            "answered_at": "",
            "ended_at": "2026-06-01T00:00:20+00:00",
            "duration_seconds": "0.0",
            "disposition": "busy",
            "hangup_side": "",
            "sip_status": "486",
        },
    ]

    output = tmp_path / "out" / "may.csv"
    output.parent.mkdir()
    written = run_cli(
        "--config",
        str(config),
        "cdr",
        "export",
        "--month",
        "2026-05",
        "--output",
        str(output),
        cwd=tmp_path,
    )
    assert written.returncode == 0 and written.stdout == ""
    assert output.read_text(encoding="utf-8") == printed.stdout
    assert "2 call records" in written.stderr

    empty = run_cli("--config", str(config), "cdr", "export", "--month", "2025-01", cwd=tmp_path)
    assert empty.stdout.strip() == ",".join(rows[0])

    bad = run_cli("--config", str(config), "cdr", "export", "--month", "2026-5", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "unicomm: error: month: must be YYYY-MM, got '2026-5'"

    # The city's months: 16:30 UTC on 31 October is October's in UTC, November's in
    # Shanghai (the default timezone), where its times carry +08:00.
    def export(config: Path, month: str) -> list[dict[str, str]]:
        done = run_cli("--config", str(config), "cdr", "export", "--month", month, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return list(csv.DictReader(io.StringIO(done.stdout)))

    [utc] = export(config, "2026-10")
    assert (utc["call_id"], utc["answered_at"]) == ("e@1", "2026-10-31T16:30:00+00:00")
    shanghai = tmp_path / "shanghai.toml"
    shanghai.write_text('[unicomm]\ndata_dir = "var"\n')
    assert export(shanghai, "2026-10") == []
    [local] = export(shanghai, "2026-11")
    assert (local["call_id"], local["started_at"], local["answered_at"], local["ended_at"]) == (
        "e@1",
        "2026-11-01T00:29:55+08:00",
        "2026-11-01T00:30:00+08:00",
        "2026-11-01T00:31:00+08:00",
    )
    report = run_cli(
        "--config", str(shanghai), "cdr", "report", "--month", "2026-11", "--csv", cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[1].split(",")[:4] == ["2026-11", "财政局", "1", "1"]

    # An unknown zone stops the command before it does anything, naming the key.
    nowhere = tmp_path / "nowhere.toml"
    nowhere.write_text('[unicomm]\ndata_dir = "var"\ntimezone = "Asia/Beijing"\n')
    refused = run_cli("--config", str(nowhere), "cdr", "export", "--month", "2026-11", cwd=tmp_path)
    assert refused.returncode != 0 and refused.stdout == ""
    assert "invalid value for 'timezone'" in refused.stderr
    assert "Asia/Beijing" in refused.stderr
