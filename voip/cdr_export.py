"""Call-detail records of one month, as rows and as CSV (read straight from the database).

A month is a calendar month of the city's time zone (the ``timezone`` setting): the
report is the city's month, not Greenwich's. Timestamps are stored in UTC; the rows
carry them in that zone, and the CSV writes them in ISO 8601 with the offset.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import astuple, dataclass, fields

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.models import Department
from voip.models import CallRecord
from voip.service import as_utc

MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class MonthError(ValueError):
    """A month that is not ``YYYY-MM``."""


@dataclass(frozen=True)
class CdrRow:
    """One call as exported; the field order is the CSV's column order."""

    call_id: str
    caller: str
    callee: str
    caller_department: str | None
    callee_department: str | None
    direction: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    duration_seconds: float
    disposition: str
    hangup_side: str
    sip_status: int | None


CSV_COLUMNS = tuple(column.name for column in fields(CdrRow))


def month_bounds(month: str, zone: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """``[first instant, first instant of the next month)`` of ``YYYY-MM`` in ``zone``,
    as UTC instants (what the database stores)."""
    match = MONTH_PATTERN.match(month)
    if match is None:
        raise MonthError(f"month: must be YYYY-MM, got {month!r}")
    year, number = int(match[1]), int(match[2])
    start = dt.datetime(year, number, 1, tzinfo=zone)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def this_month(zone: dt.tzinfo, now: dt.datetime | None = None) -> str:
    """``YYYY-MM`` of ``now`` (the present by default) in ``zone``."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(zone).strftime("%Y-%m")


async def cdr_for_month(session: AsyncSession, month: str, zone: dt.tzinfo) -> list[CdrRow]:
    """The calls that started in ``month`` of ``zone``, in the order they started; their
    times in ``zone``."""
    start, end = month_bounds(month, zone)
    caller_department = aliased(Department)
    callee_department = aliased(Department)
    rows = await session.execute(
        select(CallRecord, caller_department.code, callee_department.code)
        .outerjoin(caller_department, caller_department.id == CallRecord.caller_department_id)
        .outerjoin(callee_department, callee_department.id == CallRecord.callee_department_id)
        .where(CallRecord.started_at >= start, CallRecord.started_at < end)
        .order_by(CallRecord.started_at, CallRecord.id)
    )
    return [
        CdrRow(
            call_id=record.call_id,
            caller=record.caller,
            callee=record.callee,
            caller_department=caller_code,
            callee_department=callee_code,
            direction=record.direction,
            started_at=as_utc(record.started_at).astimezone(zone),
            answered_at=(
                as_utc(record.answered_at).astimezone(zone) if record.answered_at else None
            ),
            ended_at=as_utc(record.ended_at).astimezone(zone),
            duration_seconds=round(record.duration_seconds, 3),
            disposition=record.disposition.value,
            hangup_side=record.hangup_side,
            sip_status=record.sip_status,
        )
        for record, caller_code, callee_code in rows
    ]


def cdr_csv(rows: list[CdrRow]) -> str:
    """CSV with a header line; times in ISO 8601 with their offset, empty cells for what is
    unknown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(_cell(value) for value in astuple(row))
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)
