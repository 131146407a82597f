"""Rating and the monthly cost report: sans-I/O rules, then from the database."""

from __future__ import annotations

import datetime as dt
import math
import random
from decimal import ROUND_HALF_UP, Decimal

import pytest
from aiohttp.test_utils import TestClient

from core.context import AppContext
from core.models import Department, Role
from voip.cost_report import cost_report
from voip.dialplan import Destination, DialPlan
from voip.models import CallRecord, Disposition
from voip.rating import (
    DEFAULT_TARIFFS,
    CallFacts,
    RatingRules,
    bar_chart_svg,
    monthly_report,
    report_csv,
)

PLAN = DialPlan.default()
RULES = RatingRules(DEFAULT_TARIFFS, Decimal(15), PLAN.classify)


def outbound(callee: str, seconds: float, answered: bool = True, department: int = 1) -> CallFacts:
    return CallFacts(department, "outbound", callee, answered, seconds)


def test_internal_inbound_unanswered_and_emergency_calls_cost_nothing() -> None:
    for call in (
        CallFacts(1, "internal", "1002", True, 600),
        CallFacts(None, "inbound", "1002", True, 600),
        outbound("02112345678", 0, answered=False),
        outbound("110", 300),
    ):
        rated = RULES.rate(call)
        assert (rated.cost, rated.retail) == (0, 0)


@pytest.mark.parametrize(
    ("callee", "seconds", "billable", "retail", "cost"),
    [
        ("12345678", 1, 60, 10, 9),  # local, one started minute: 10 fen less 15% = 8.5 -> 9
        ("12345678", 60, 60, 10, 9),
        ("12345678", 61, 120, 20, 17),
        ("02112345678", 125, 180, 90, 77),  # national 30 fen/min: 76.5 -> 77
        ("13800138000", 30, 60, 30, 26),  # a mobile rates as national: 25.5 -> 26
        ("0014155550100", 7, 12, 60, 51),  # international, 6 s increments at 300 fen/min
        ("01012345678", 59.5, 60, 10, 9),  # our own area code: local
    ],
)
def test_outbound_calls_at_the_carrier_tariff_less_the_discount(
    callee: str, seconds: float, billable: int, retail: int, cost: int
) -> None:
    rated = RULES.rate(outbound(callee, seconds))
    assert (rated.billable_seconds, rated.retail, rated.cost) == (billable, retail, cost)


def test_the_discount_is_configurable() -> None:
    none = RatingRules(DEFAULT_TARIFFS, Decimal(0), PLAN.classify)
    assert none.rate(outbound("02112345678", 60)).cost == 30
    half = RatingRules(DEFAULT_TARIFFS, Decimal("50"), PLAN.classify)
    assert half.rate(outbound("02112345678", 60)).cost == 15


def independent_cost(call: CallFacts) -> tuple[int, int]:
    """The rules written out again, straight from the tariff sheet."""
    if call.direction != "outbound" or not call.answered or call.callee in PLAN.emergency:
        return 0, 0
    per_minute, step = {
        Destination.LOCAL: (10, 60),
        Destination.NATIONAL: (30, 60),
        Destination.INTERNATIONAL: (300, 6),
    }[PLAN.classify(call.callee)]
    billed = math.ceil(call.duration_seconds / step) * step
    retail = Decimal(billed * per_minute) / 60
    half_up = lambda d: int(d.quantize(Decimal(1), rounding=ROUND_HALF_UP))  # noqa: E731
    return half_up(retail * Decimal("0.85")), half_up(retail)


def random_calls(count: int, seed: int = 7) -> list[CallFacts]:
    pick = random.Random(seed)
    numbers = ["1002", "12345678", "02112345678", "13800138000", "0014155550100", "119"]
    calls = []
    for _ in range(count):
        callee = pick.choice(numbers)
        direction = "internal" if callee == "1002" else pick.choice(["outbound", "inbound"])
        calls.append(
            CallFacts(
                pick.choice([1, 2, None]),
                direction,
                callee,
                pick.random() < 0.8,
                round(pick.uniform(0, 900), 3),
            )
        )
    return calls


def test_report_totals_are_the_sums_of_the_rated_calls() -> None:
    calls = random_calls(500)
    report = monthly_report("2026-11", calls, RULES, {1: "财政局", 2: "IT"})
    placed = [c for c in calls if c.direction != "inbound"]
    expected = [independent_cost(c) for c in placed]
    total = report.total
    assert total.calls == len(placed)
    assert total.outbound_calls == sum(c.direction == "outbound" for c in placed)
    assert total.cost == sum(cost for cost, _ in expected)
    assert total.retail == sum(retail for _, retail in expected)
    assert total.savings == total.retail - total.cost > 0
    assert total.talk_seconds == pytest.approx(
        sum(c.duration_seconds for c in placed if c.answered)
    )
    for row in report.rows:
        mine = [c for c in placed if c.caller_department_id == row.department_id]
        assert row.cost == sum(independent_cost(c)[0] for c in mine)
    csv_text = report_csv(report)
    assert csv_text.splitlines()[0].startswith("month,department,calls")
    assert csv_text.splitlines()[-1].split(",")[6] == f"{total.cost / 100:.2f}"
    svg = bar_chart_svg(report, cost_label="费用 <cost>", savings_label="savings")
    assert svg.startswith("<svg") and "费用 &lt;cost&gt;" in svg and "<script" not in svg


async def test_report_from_the_database_matches_the_rules(app_context: AppContext) -> None:
    calls = random_calls(200, seed=11)
    month_start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    async with app_context.db.session() as session:
        session.add_all([Department(code="FIN", name="财政局"), Department(code="IT", name="IT")])
        await session.flush()
        for index, call in enumerate(calls):
            started = month_start + dt.timedelta(hours=index)
            session.add(
                CallRecord(
                    call_id=f"c{index}",
                    caller="1001",
                    callee=call.callee,
                    caller_department_id=call.caller_department_id,
                    direction=call.direction,
                    started_at=started,
                    answered_at=started if call.answered else None,
                    ended_at=started + dt.timedelta(seconds=call.duration_seconds),
                    duration_seconds=call.duration_seconds if call.answered else 0.0,
                    disposition=Disposition.ANSWERED if call.answered else Disposition.NO_ANSWER,
                )
            )
        # A call of the next month is not in October's report.
        session.add(
            CallRecord(
                call_id="november",
                caller="1001",
                callee="02112345678",
                caller_department_id=1,
                direction="outbound",
                started_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                answered_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                ended_at=dt.datetime(2026, 11, 1, 0, 10, tzinfo=dt.UTC),
                duration_seconds=600,
                disposition=Disposition.ANSWERED,
            )
        )
    async with app_context.db.session() as session:
        report = await cost_report(session, "2026-10", 15.0)
    placed = [c for c in calls if c.direction != "inbound"]
    assert report.total.calls == len(placed)
    assert report.total.cost == sum(independent_cost(c)[0] for c in placed)
    assert report.total.retail == sum(independent_cost(c)[1] for c in placed)
    assert {row.department for row in report.rows} == {"财政局", "IT", ""}


async def test_cost_page_and_csv_in_both_languages(
    client: TestClient, app_context: AppContext
) -> None:
    anonymous = await client.get("/console/voip/costs.csv?month=2026-10", allow_redirects=False)
    assert anonymous.status == 302
    async with app_context.db.session() as session:
        await app_context.auth.create_user(session, "clerk", "correct-horse", Role.STAFF)
    login = await client.post(
        "/api/auth/login", json={"username": "clerk", "password": "correct-horse"}
    )
    assert login.status == 200
    for lang, title in (("zh", "话费报表"), ("en", "Call costs")):
        response = await client.get(
            "/console/voip/costs?month=2026-10", headers={"Accept-Language": lang}
        )
        assert response.status == 200
        assert title in await response.text()
    response = await client.get(
        "/console/voip/costs.csv?month=2026-10", headers={"Accept-Language": "en"}
    )
    assert response.status == 200 and response.content_type == "text/csv"
    assert (await response.text()).lstrip("\ufeff").startswith("month,department")
    bad = await client.get("/console/voip/costs.csv?month=2026-13")
    assert bad.status == 400
