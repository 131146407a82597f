"""Rating calls and the monthly cost report, sans-I/O.

The city's plan: internal calls cost nothing; outbound calls leave through one
carrier at its published (retail) tariff less a bulk discount; the report shows,
per department, what was spent and what the discount saved against retail.

Money is kept in integer fen (0.01 CNY). A call is billed by started increments
(``increment_seconds``, a minute by default) of its talk time; its retail price is
``increments * increment_seconds / 60 * retail_per_minute`` and its cost is that
less the discount, each rounded half up to a fen per call, so the report's totals
are exactly the sums of its calls.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from html import escape

from .dialplan import Destination

FREE = frozenset({Destination.INTERNAL, Destination.EMERGENCY})


@dataclass(frozen=True)
class Tariff:
    destination: Destination
    retail_per_minute: int  # fen
    increment_seconds: int = 60


# Seeded by migration voip_0004; the console and the table are the truth after that.
DEFAULT_TARIFFS = {
    Destination.LOCAL: Tariff(Destination.LOCAL, 10),
    Destination.NATIONAL: Tariff(Destination.NATIONAL, 30),
    Destination.INTERNATIONAL: Tariff(Destination.INTERNATIONAL, 300, 6),
}


@dataclass(frozen=True)
class CallFacts:
    """What rating needs of one call-detail record."""

    caller_department_id: int | None
    direction: str  # internal, outbound, inbound
    callee: str
    answered: bool
    duration_seconds: float


@dataclass(frozen=True)
class RatedCall:
    destination: Destination
    billable_seconds: int
    retail: int  # fen
    cost: int  # fen


def _fen(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class RatingRules:
    tariffs: dict[Destination, Tariff]
    discount_percent: Decimal
    classify: Callable[[str], Destination]  # the dial plan's, for outbound numbers

    def rate(self, call: CallFacts) -> RatedCall:
        if call.direction != "outbound":
            # Internal calls are free; inbound calls are paid by whoever called us.
            return RatedCall(Destination.INTERNAL, 0, 0, 0)
        destination = self.classify(call.callee)
        tariff = self.tariffs.get(destination)
        if not call.answered or destination in FREE or tariff is None:
            return RatedCall(destination, 0, 0, 0)
        seconds = max(0.0, call.duration_seconds)
        increments = math.ceil(seconds / tariff.increment_seconds) if seconds > 0 else 0
        billable = increments * tariff.increment_seconds
        retail = Decimal(billable) * tariff.retail_per_minute / 60
        cost = retail * (100 - self.discount_percent) / 100
        return RatedCall(destination, billable, _fen(retail), _fen(cost))


@dataclass
class DepartmentCost:
    department_id: int | None
    department: str  # its name, or "" for extensions without a department
    calls: int = 0  # every call placed (internal and outbound, answered or not)
    outbound_calls: int = 0
    talk_seconds: float = 0.0  # answered calls, every direction placed by the department
    billable_seconds: int = 0
    cost: int = 0  # fen
    retail: int = 0  # fen

    @property
    def minutes(self) -> float:
        return round(self.talk_seconds / 60, 1)

    @property
    def savings(self) -> int:
        return self.retail - self.cost


@dataclass
class CostReport:
    month: str
    rows: list[DepartmentCost] = field(default_factory=list)

    @property
    def total(self) -> DepartmentCost:
        total = DepartmentCost(None, "total")
        for row in self.rows:
            total.calls += row.calls
            total.outbound_calls += row.outbound_calls
            total.talk_seconds += row.talk_seconds
            total.billable_seconds += row.billable_seconds
            total.cost += row.cost
            total.retail += row.retail
        return total


def monthly_report(
    month: str,
    calls: Iterable[CallFacts],
    rules: RatingRules,
    departments: dict[int, str],
) -> CostReport:
    """Per department, the calls it placed in ``month`` (inbound calls belong to nobody)."""
    rows: dict[int | None, DepartmentCost] = {}
    for call in calls:
        if call.direction == "inbound":
            continue
        key = call.caller_department_id
        row = rows.get(key)
        if row is None:
            name = departments.get(key, "") if key is not None else ""
            row = rows[key] = DepartmentCost(key, name)
        rated = rules.rate(call)
        row.calls += 1
        if call.direction == "outbound":
            row.outbound_calls += 1
        if call.answered:
            row.talk_seconds += call.duration_seconds
        row.billable_seconds += rated.billable_seconds
        row.cost += rated.cost
        row.retail += rated.retail
    ordered = sorted(rows.values(), key=lambda r: (-r.cost, r.department))
    return CostReport(month, ordered)


def yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


CSV_HEADER = (
    "month",
    "department",
    "calls",
    "outbound_calls",
    "minutes",
    "billable_minutes",
    "cost_cny",
    "retail_cny",
    "savings_cny",
)


def report_csv(report: CostReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in [*report.rows, report.total]:
        writer.writerow(
            (
                report.month,
                row.department,
                row.calls,
                row.outbound_calls,
                f"{row.minutes:.1f}",
                f"{row.billable_seconds / 60:.1f}",
                yuan(row.cost),
                yuan(row.retail),
                yuan(row.savings),
            )
        )
    return out.getvalue()


def bar_chart_svg(report: CostReport, *, cost_label: str, savings_label: str) -> str:
    """Cost and savings per department as horizontal stacked bars (inline SVG, no script)."""
    rows = report.rows or [DepartmentCost(None, "-")]
    widest = max((row.retail for row in rows), default=0) or 1
    label_width, bar_width, row_height = 160, 420, 28
    height = row_height * len(rows) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="cost-chart" '
        f'width="{label_width + bar_width + 120}" height="{height}" '
        f'viewBox="0 0 {label_width + bar_width + 120} {height}">'
    ]
    for index, row in enumerate(rows):
        y = 10 + index * row_height
        cost = round(bar_width * row.cost / widest)
        saved = round(bar_width * row.savings / widest)
        name = escape(row.department or "-")
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{name}</text>')
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{cost}" height="20" fill="#3a6ea5">'
            f"<title>{escape(cost_label)}: {yuan(row.cost)}</title></rect>"
        )
        parts.append(
            f'<rect x="{label_width + cost}" y="{y}" width="{saved}" height="20" '
            f'fill="#9cc69b"><title>{escape(savings_label)}: {yuan(row.savings)}</title></rect>'
        )
        parts.append(
            f'<text x="{label_width + cost + saved + 6}" y="{y + 16}" font-size="12">'
            f"{yuan(row.cost)}</text>"
        )
    legend_y = height - 12
    parts.append(f'<rect x="0" y="{legend_y - 10}" width="12" height="12" fill="#3a6ea5"/>')
    parts.append(f'<text x="16" y="{legend_y}" font-size="12">{escape(cost_label)}</text>')
    parts.append(f'<rect x="120" y="{legend_y - 10}" width="12" height="12" fill="#9cc69b"/>')
    parts.append(f'<text x="136" y="{legend_y}" font-size="12">{escape(savings_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
