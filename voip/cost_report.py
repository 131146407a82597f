"""The monthly cost report from the database: call records, tariffs, the dial plan."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Department
from voip.models import CallRecord, DialRule, Disposition, TariffRow

from .cdr_export import month_bounds
from .dialplan import Destination, DialPlan
from .rating import DEFAULT_TARIFFS, CallFacts, CostReport, RatingRules, Tariff, monthly_report


async def rating_rules(session: AsyncSession, discount_percent: float) -> RatingRules:
    rows = (await session.scalars(select(TariffRow))).all()
    tariffs = dict(DEFAULT_TARIFFS)
    for row in rows:
        destination = Destination(row.destination)
        tariffs[destination] = Tariff(destination, row.retail_per_minute, row.increment_seconds)
    rules = (await session.scalars(select(DialRule))).all()
    plan = DialPlan.from_rules((r.kind, r.pattern, r.target) for r in rules) if rules else None
    return RatingRules(
        tariffs,
        Decimal(str(discount_percent)),
        (plan or DialPlan.default()).classify,
    )


async def cost_report(
    session: AsyncSession, month: str, discount_percent: float, zone: dt.tzinfo
) -> CostReport:
    """The calls that started in ``month`` of ``zone`` (the city's month, not UTC's).

    Raises cdr_export.MonthError for a month that is not ``YYYY-MM``."""
    start, end = month_bounds(month, zone)
    records = (
        await session.execute(
            select(
                CallRecord.caller_department_id,
                CallRecord.direction,
                CallRecord.callee,
                CallRecord.disposition,
                CallRecord.duration_seconds,
            ).where(CallRecord.started_at >= start, CallRecord.started_at < end)
        )
    ).all()
    departments = {d.id: d.name for d in (await session.scalars(select(Department))).all()}
    rules = await rating_rules(session, discount_percent)
    calls = (
        CallFacts(
            department_id,
            direction,
            callee,
            disposition is Disposition.ANSWERED,
            duration,
        )
        for department_id, direction, callee, disposition, duration in records
    )
    return monthly_report(month, calls, rules, departments)
