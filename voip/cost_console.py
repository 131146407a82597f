"""The console's cost report page (chart and table) and its CSV export."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from markupsafe import Markup

from core.auth import identity_of
from core.console import ConsolePage
from core.i18n import LANG
from core.web import CONSOLE, CTX, I18N

from .cdr_export import MonthError, this_month
from .cost_report import cost_report
from .rating import bar_chart_svg, report_csv

PAGE = ConsolePage(
    key="voip_costs",
    title={"zh": "话费报表", "en": "Call costs"},
    summary={"zh": "各部门月度通话、分钟、费用与节省", "en": "Calls, minutes, cost and savings"},
    path="/console/voip/costs",
    template="voip/costs.html",
    parent="voip",
)
CSV_PATH = "/console/voip/costs.csv"


def mount(app: web.Application) -> None:
    ctx = app[CTX]
    console = app[CONSOLE]
    translations = app[I18N]
    discount = ctx.settings.voip_bulk_discount_percent
    zone = ctx.settings.zone  # the city's months, not UTC's

    async def page(request: web.Request) -> Mapping[str, Any]:
        month = request.query.get("month") or this_month(zone)
        lang = request[LANG]
        try:
            async with ctx.db.session() as session:
                report = await cost_report(session, month, discount, zone)
        except MonthError:
            raise web.HTTPBadRequest(text=translations.get(lang, "voip.costs.bad_month")) from None
        chart = bar_chart_svg(
            report,
            cost_label=translations.get(lang, "voip.costs.cost"),
            savings_label=translations.get(lang, "voip.costs.savings"),
        )
        return {
            "page": PAGE,
            "month": month,
            "report": report,
            "total": report.total,
            "discount": discount,
            "chart": Markup(chart),  # built from escaped text only (rating.bar_chart_svg)
            "csv_path": CSV_PATH,
        }

    console.add_page(app.router, PAGE, page)

    async def export(request: web.Request) -> web.StreamResponse:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound(f"/login?next={PAGE.path}")
        month = request.query.get("month") or this_month(zone)
        try:
            async with ctx.db.session() as session:
                report = await cost_report(session, month, discount, zone)
        except MonthError:
            raise web.HTTPBadRequest(
                text=translations.get(request[LANG], "voip.costs.bad_month")
            ) from None
        return web.Response(
            body=report_csv(report).encode("utf-8-sig"),  # the BOM: spreadsheets read UTF-8
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="costs-{month}.csv"'},
        )

    app.router.add_get(CSV_PATH, export)


MESSAGES = {
    "en": {
        "voip.costs.month": "Month",
        "voip.costs.show": "Show",
        "voip.costs.department": "Department",
        "voip.costs.calls": "Calls",
        "voip.costs.outbound": "Outbound",
        "voip.costs.minutes": "Minutes",
        "voip.costs.cost": "Cost (CNY)",
        "voip.costs.retail": "At retail (CNY)",
        "voip.costs.savings": "Savings (CNY)",
        "voip.costs.total": "Total",
        "voip.costs.no_department": "(no department)",
        "voip.costs.discount": "Carrier bulk discount: {percent}% off the retail tariff; "
        "internal calls are free.",
        "voip.costs.csv": "Download CSV",
        "voip.costs.empty": "No calls this month.",
        "voip.costs.bad_month": "month: must be YYYY-MM",
    },
    "zh": {
        "voip.costs.month": "月份",
        "voip.costs.show": "查看",
        "voip.costs.department": "部门",
        "voip.costs.calls": "通话数",
        "voip.costs.outbound": "外呼",
        "voip.costs.minutes": "分钟",
        "voip.costs.cost": "费用（元）",
        "voip.costs.retail": "按零售价（元）",
        "voip.costs.savings": "节省（元）",
        "voip.costs.total": "合计",
        "voip.costs.no_department": "（无部门）",
        "voip.costs.discount": "运营商批量折扣：零售资费减 {percent}%；内部通话免费。",
        "voip.costs.csv": "下载 CSV",
        "voip.costs.empty": "本月没有通话。",
        "voip.costs.bad_month": "月份格式必须是 YYYY-MM",
    },
}
