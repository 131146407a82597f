"""Rating and the monthly cost report: sans-I/O rules, then from the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from support.ports import free_sip_port
from support.sipp import Sipp, SippResult, run_sipp, sipp_binary
from support.sipserver import PASSWORD, start_unicomm

from core.context import AppContext
from core.models import Department, Role
from voip.cdr_export import CdrRow, cdr_csv, cdr_for_month
from voip.cost_report import cost_report
from voip.dialplan import Destination, DialPlan
from voip.models import CallRecord, ClassOfService, Disposition, Extension
from voip.rating import (
    DEFAULT_TARIFFS,
    CallFacts,
    CostReport,
    RatingRules,
    bar_chart_svg,
    monthly_report,
    report_csv,
)
from voip.service import as_utc

PLAN = DialPlan.default()
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the default ``timezone``: the city's months
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
        report = await cost_report(session, "2026-10", 15.0, SHANGHAI)
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
    # Answered at 00:30 on 1 November in Shanghai (the default timezone): November's call.
    answered = dt.datetime(2026, 10, 31, 16, 30, tzinfo=dt.UTC)
    async with app_context.db.session() as session:
        session.add(
            CallRecord(
                call_id="after-midnight",
                caller="1001",
                callee="02112345678",
                direction="outbound",
                started_at=answered - dt.timedelta(seconds=5),
                answered_at=answered,
                ended_at=answered + dt.timedelta(seconds=60),
                duration_seconds=60.0,
                disposition=Disposition.ANSWERED,
            )
        )
    totals: dict[str, tuple[str, ...]] = {}
    for month in ("2026-10", "2026-11"):
        response = await client.get(f"/console/voip/costs.csv?month={month}")
        total = (await response.text()).splitlines()[-1].split(",")
        totals[month] = (total[2], total[3], total[6])  # calls, outbound calls, cost
    assert totals == {"2026-10": ("0", "0", "0.00"), "2026-11": ("1", "1", "0.26")}
    page = await client.get("/console/voip/costs?month=2026-11")
    assert "0.26" in await page.text()
    bad = await client.get("/console/voip/costs.csv?month=2026-13")
    assert bad.status == 400


# -- a month of real calls -----------------------------------------------------------------

CARRIER = "127.0.0.2"


async def test_a_month_of_real_calls_costs_the_sum_of_its_records(tmp_path: Path) -> None:
    """Calls made through the exchange (SIPp phones, a SIPp carrier), then moved into
    October 2026: internal, local, national and international calls of two departments,
    one crossing Shanghai's midnight into November, a 403 and a refused inbound call, and
    the local call answered at 16:30 UTC on the 31st: 00:30 on 1 November in Shanghai. Each
    month's report is the sum of that month's records rated by the tariff sheet; the months
    are Shanghai's (the default ``timezone``), and with UTC's the local call is October's."""
    carrier_port = free_sip_port()
    server = await start_unicomm(
        tmp_path / "server",
        extensions=("1001", "1002", "1003"),
        voip_trunk_host=CARRIER,
        voip_trunk_port=carrier_port,
        voip_trunk_domain="carrier.example",
        voip_trunk_username="trunkuser",
        voip_trunk_password="trunk-pw-1",
        voip_trunk_register=False,
    )
    target = f"127.0.0.1:{server.sip_port}"
    try:
        async with server.ctx.db.session() as session:
            finance = Department(code="FIN", name="财政局")
            session.add(finance)
            await session.flush()
            for number, cos, department in (
                ("1001", ClassOfService.INTERNATIONAL, None),  # IT
                ("1002", ClassOfService.INTERNAL, None),  # IT, internal only
                ("1003", ClassOfService.NATIONAL, finance.id),
            ):
                values: dict[str, object] = {"class_of_service": cos}
                if department is not None:
                    values["department_id"] = department
                await session.execute(
                    update(Extension).where(Extension.number == number).values(**values)
                )
        await server.voip.accounts.reload()

        async def call(
            user: str, number: str, scenario: str = "uac_call", **options: object
        ) -> SippResult:
            return await run_sipp(
                scenario,
                target,
                users=[(user, PASSWORD)],
                service=number,
                work_dir=tmp_path / f"{user}-{number}",
                timeout=20,
                **options,  # type: ignore[arg-type]
            )

        # From the carrier, to a DID nobody has: refused (404), a record of an inbound call.
        refused_inbound = await run_sipp(
            "uac_expect_status",
            target,
            users=[("13912345678", "carrier-has-no-password")],
            service="01099990000",
            domain="carrier.example",
            local_port=carrier_port,
            extra_args=["-i", CARRIER, "-mi", CARRIER],
            work_dir=tmp_path / "inbound",
            timeout=20,
        )
        assert refused_inbound.final_statuses == [404], refused_inbound.describe()
        carrier = Sipp(
            "carrier",
            users=[("trunkuser", "trunk-pw-1")],
            calls=4,
            local_port=carrier_port,
            work_dir=tmp_path / "carrier",
            extra_args=["-i", CARRIER, "-mi", CARRIER, "-rtp_echo"],
        )
        # Sipp.spawn() waits for 127.0.0.1:port to be taken; this one listens on CARRIER.
        carrier.process = await asyncio.create_subprocess_exec(
            sipp_binary(),
            *carrier.arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=(carrier.work_dir / "stdout.log").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            cwd=carrier.work_dir,
        )
        phone = Sipp("uas_answer", service="1002", calls=2, work_dir=tmp_path / "1002")
        try:
            registered = await call("1002", "", "register_auth", local_port=phone.port)
            assert registered.ok, registered.describe()
            await phone.spawn()
            placed = [
                await call("1001", "1002", duration_ms=1500),  # internal, IT
                await call("1003", "1002", duration_ms=700),  # internal, FIN
                await call("1001", "012345678", duration_ms=1200),  # local
                await call("1001", "00014155550100", duration_ms=1300),  # international
                await call("1003", "002112345678", duration_ms=900),  # national
                await call("1003", "013800138000", duration_ms=2500),  # a mobile: national
            ]
            for result in placed:
                assert result.ok, result.describe()
            refused = await call("1002", "002112345678", "uac_expect_status")
            assert refused.final_statuses == [403], refused.describe()  # internal only
            assert (await phone.wait(10)).ok
        finally:
            await phone.kill()
            await carrier.kill()
        await server.voip.cdr.flush()
        async with server.ctx.db.session() as session:
            made = (await session.scalars(select(CallRecord).order_by(CallRecord.id))).all()
            assert len(made) == 8
            # Into October 2026, days apart, each call as long as it was; the call to the
            # mobile answered a moment before midnight on the 31st in Shanghai, so it ends in
            # November; the local call answered at 00:30 on 1 November in Shanghai (16:30 UTC
            # on the 31st).
            for index, record in enumerate(made):
                started = dt.datetime(2026, 10, 3 + 3 * index, 9, tzinfo=dt.UTC)
                answered_at = {
                    "13800138000": dt.datetime(2026, 11, 1, tzinfo=SHANGHAI)
                    - dt.timedelta(seconds=0.5),
                    "12345678": dt.datetime(2026, 10, 31, 16, 30, tzinfo=dt.UTC),
                }.get(record.callee)
                if answered_at is not None:
                    answered = as_utc(record.answered_at or record.started_at)
                    # Stored in UTC, as the exchange stores every time (SQLite keeps no zone).
                    started = (answered_at - (answered - as_utc(record.started_at))).astimezone(
                        dt.UTC
                    )
                shift = started - as_utc(record.started_at)
                record.started_at = started
                record.ended_at = as_utc(record.ended_at) + shift
                if record.answered_at is not None:
                    record.answered_at = as_utc(record.answered_at) + shift
        async with server.ctx.db.session() as session:
            october = await cdr_for_month(session, "2026-10", SHANGHAI)
            november = await cdr_for_month(session, "2026-11", SHANGHAI)
            report = await cost_report(session, "2026-10", 15.0, SHANGHAI)
            next_month = await cost_report(session, "2026-11", 15.0, SHANGHAI)
            utc_october = await cdr_for_month(session, "2026-10", dt.UTC)
            utc_november = await cdr_for_month(session, "2026-11", dt.UTC)
            utc_report = await cost_report(session, "2026-10", 15.0, dt.UTC)
    finally:
        await server.stop()

    kinds = [(r.caller, r.callee, r.direction, r.disposition, r.sip_status) for r in october]
    local_call = ("1001", "12345678", "outbound", "answered", 200)
    assert kinds == [
        ("13912345678", "01099990000", "inbound", "not_found", 404),
        ("1001", "1002", "internal", "answered", 200),
        ("1003", "1002", "internal", "answered", 200),
        ("1001", "0014155550100", "outbound", "answered", 200),
        ("1003", "02112345678", "outbound", "answered", 200),
        ("1002", "002112345678", "outbound", "rejected", 403),  # an outbound attempt
        ("1003", "13800138000", "outbound", "answered", 200),  # from 23:59:59 on the 31st
    ]
    midnight = october[6]
    assert midnight.started_at.month == 10 and midnight.ended_at.month == 11
    assert midnight.started_at.utcoffset() == dt.timedelta(hours=8)
    assert independent_cost(facts_of([midnight])[0][1])[1] == 30  # one national minute
    refused_403 = facts_of([october[5]])[0][1]
    assert RULES.rate(refused_403).cost == 0 and independent_cost(refused_403) == (0, 0)
    # November in Shanghai: the local call, at 00:30 of the 1st, in Shanghai's time.
    [after_midnight] = november
    assert (after_midnight.caller, after_midnight.callee, after_midnight.direction) == (
        local_call[:3]
    )
    assert after_midnight.answered_at is not None
    assert after_midnight.answered_at.isoformat() == "2026-11-01T00:30:00+08:00"
    assert ",2026-11-01T00:30:00+08:00," in cdr_csv(november)
    # In UTC the same call is October's, and every time is written with +00:00.
    assert utc_november == []
    assert [r.call_id for r in utc_october] == [r.call_id for r in [*october, *november]]
    assert utc_october[-1].answered_at == dt.datetime(2026, 10, 31, 16, 30, tzinfo=dt.UTC)
    assert "+08:00" not in cdr_csv(utc_october) and "+00:00" in cdr_csv(utc_october)

    answered = [f for _, f in facts_of(utc_october) if f.direction == "outbound" and f.answered]
    destinations = {PLAN.classify(f.callee) for f in answered}
    assert destinations == {Destination.LOCAL, Destination.NATIONAL, Destination.INTERNATIONAL}
    # Each month's report is the sum of its records, per department (the refused inbound
    # call is no one's); the 403 counts as an outbound call placed, at no cost.
    assert_report_is_the_sum(report, october, calls=(6, 4), per_department={"IT": 3, "FIN": 3})
    assert_report_is_the_sum(next_month, november, calls=(1, 1), per_department={"IT": 1})
    assert_report_is_the_sum(
        utc_report, utc_october, calls=(7, 5), per_department={"IT": 4, "FIN": 3}
    )
    assert report.total.cost + next_month.total.cost == utc_report.total.cost


def facts_of(rows: list[CdrRow]) -> list[tuple[str | None, CallFacts]]:
    """Each record as rating sees it, beside the department that placed it."""
    return [
        (
            row.caller_department,
            CallFacts(
                None,
                row.direction,
                row.callee,
                row.disposition == "answered",
                row.duration_seconds,
            ),
        )
        for row in rows
    ]


def assert_report_is_the_sum(
    report: CostReport,
    rows: list[CdrRow],
    *,
    calls: tuple[int, int],
    per_department: dict[str, int],
) -> None:
    placed = [(code, f) for code, f in facts_of(rows) if f.direction != "inbound"]
    total = report.total
    assert (total.calls, total.outbound_calls) == calls
    assert total.outbound_calls == sum(f.direction == "outbound" for _, f in placed)
    assert total.cost == sum(independent_cost(f)[0] for _, f in placed) > 0
    assert total.retail == sum(independent_cost(f)[1] for _, f in placed)
    assert total.talk_seconds == pytest.approx(
        sum(f.duration_seconds for _, f in placed if f.answered)
    )
    names = {"IT": "IT", "FIN": "财政局"}
    assert {row.department: row.calls for row in report.rows} == {
        names[code]: count for code, count in per_department.items()
    }
    for code in per_department:
        [row] = [r for r in report.rows if r.department == names[code]]
        mine = [f for c, f in placed if c == code]
        assert row.calls == len(mine)
        assert row.outbound_calls == sum(f.direction == "outbound" for f in mine)
        assert row.cost == sum(independent_cost(f)[0] for f in mine)
        assert row.retail == sum(independent_cost(f)[1] for f in mine)
    assert report_csv(report).splitlines()[-1].split(",")[6] == f"{total.cost / 100:.2f}"
