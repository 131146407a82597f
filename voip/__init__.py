"""The IP telephony exchange: extensions, registrar, calls, features, trunk, costs.

Narrow interface for other services (rule 1): :func:`place_call` rings a number and
reads a text to it (sms escalation), with :class:`CallOutcome` / :class:`CallResult`, and
collects the keys the callee presses with :class:`CollectDigits`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from core.cli import DemoReport
from core.context import AppContext
from core.web import CONSOLE, CTX, I18N
from voip import api, cost_console, service, trunk_console
from voip.cli import add_cli
from voip.features import api as features_api
from voip.features import console as features_console
from voip.models import ClassOfService, Extension
from voip.outbound_calls import (
    ORIGINATIONS,
    CallOutcome,
    CallResult,
    CollectDigits,
    Originations,
    place_call,
)
from voip.pbx import Pbx
from voip.server import VoipServer
from voip.transport.ws import PATH as WS_PATH

MESSAGES = {
    "en": {
        "voip.extensions": "Extensions",
        "voip.number": "Number",
        "voip.department": "Department",
        "voip.cos": "Class of service",
        "voip.cos.internal": "Internal only",
        "voip.cos.local": "Local",
        "voip.cos.national": "National",
        "voip.cos.international": "International",
        "voip.enabled": "Enabled",
        "voip.yes": "yes",
        "voip.no": "no",
        "voip.password": "SIP password",
        "voip.new_password": "New SIP password",
        "voip.new_password_hint": "leave empty to keep the password",
        "voip.add_title": "Add an extension",
        "voip.edit_title": "Extension {number}",
        "voip.back": "Back to the telephony page",
        "voip.remove_confirm": "Remove extension {number}?",
        "voip.notice.added": "Extension {number} was added.",
        "voip.notice.saved": "Extension {number} was saved.",
        "voip.notice.removed": "Extension {number} was removed.",
        "voip.import_title": "Import from CSV",
        "voip.import_help": "Header: number,name,department,password[,class_of_service]; "
        'UTF-8 (a spreadsheet\'s "CSV UTF-8"). Good rows are added, bad rows are listed.',
        "voip.import_submit": "Import",
        "voip.import_summary": "{imported} extensions imported, {failed} rows refused.",
        "voip.line": "Line",
        "voip.field": "Field",
        "voip.reason": "Reason",
        "voip.registered_now": "Registered now",
        "voip.contact": "Contact",
        "voip.source": "From",
        "voip.transport": "Transport",
        "voip.user_agent": "Phone",
        "voip.expires": "Expires",
        "voip.expires_in": "in {seconds} s",
        "voip.none_registered": "No phone is registered.",
        "voip.live_calls": "Live calls",
        "voip.caller": "Caller",
        "voip.callee": "Callee",
        "voip.call_state": "State",
        "voip.call_state.ringing": "ringing",
        "voip.call_state.answered": "talking",
        "voip.started": "Started",
        "voip.node": "Node",
        "voip.no_calls": "No call in progress.",
        "voip.field.number": "Number",
        "voip.field.name": "Name",
        "voip.field.department": "Department",
        "voip.field.password": "SIP password",
        "voip.field.class_of_service": "Class of service",
        "voip.field.file": "File",
        "voip.field.row": "Row",
        # The refusals read the same as in the API and the command line.
        **{f"voip.error.{code}": text for code, text in service.ERROR_TEXT.items()},
    },
    "zh": {
        "voip.extensions": "分机",
        "voip.number": "号码",
        "voip.department": "部门",
        "voip.cos": "呼叫权限",
        "voip.cos.internal": "仅内部",
        "voip.cos.local": "市话",
        "voip.cos.national": "国内长途",
        "voip.cos.international": "国际长途",
        "voip.enabled": "启用",
        "voip.yes": "是",
        "voip.no": "否",
        "voip.password": "SIP 密码",
        "voip.new_password": "新 SIP 密码",
        "voip.new_password_hint": "留空则不修改密码",
        "voip.add_title": "添加分机",
        "voip.edit_title": "分机 {number}",
        "voip.back": "返回电话交换页面",
        "voip.remove_confirm": "确定删除分机 {number}？",
        "voip.notice.added": "已添加分机 {number}。",
        "voip.notice.saved": "已保存分机 {number}。",
        "voip.notice.removed": "已删除分机 {number}。",
        "voip.import_title": "从 CSV 导入",
        "voip.import_help": "表头：number,name,department,password[,class_of_service]；"
        "UTF-8 编码（表格软件的“CSV UTF-8”）。正确的行会导入，错误的行逐行列出。",
        "voip.import_submit": "导入",
        "voip.import_summary": "已导入 {imported} 个分机，{failed} 行被拒绝。",
        "voip.line": "行号",
        "voip.field": "字段",
        "voip.reason": "原因",
        "voip.registered_now": "当前注册",
        "voip.contact": "联系地址",
        "voip.source": "来源",
        "voip.transport": "传输",
        "voip.user_agent": "话机",
        "voip.expires": "到期",
        "voip.expires_in": "{seconds} 秒后",
        "voip.none_registered": "当前没有话机注册。",
        "voip.live_calls": "当前通话",
        "voip.caller": "主叫",
        "voip.callee": "被叫",
        "voip.call_state": "状态",
        "voip.call_state.ringing": "振铃中",
        "voip.call_state.answered": "通话中",
        "voip.started": "开始时间",
        "voip.node": "节点",
        "voip.no_calls": "当前没有通话。",
        "voip.field.number": "号码",
        "voip.field.name": "姓名",
        "voip.field.department": "部门",
        "voip.field.password": "SIP 密码",
        "voip.field.class_of_service": "呼叫权限",
        "voip.field.file": "文件",
        "voip.field.row": "行",
        "voip.error.number_format": "必须是 2 到 8 位数字",
        "voip.error.number_exists": "分机 {number} 已存在",
        "voip.error.number_unknown": "没有分机 {number}",
        "voip.error.number_repeated": "号码 {number} 已在第 {line} 行出现",
        "voip.error.name_empty": "不能为空",
        "voip.error.name_too_long": f"最多 {service.MAX_NAME} 个字符",
        "voip.error.password_short": f"至少需要 {service.MIN_SIP_PASSWORD} 个字符",
        "voip.error.password_too_long": f"最多 {service.MAX_SIP_PASSWORD} 个字符",
        "voip.error.department_unknown": "没有代码为 {code} 的部门",
        "voip.error.cos_unknown": "必须是 internal、local、national、international 之一",
        "voip.error.file_encoding": "文件不是 UTF-8 文本",
        "voip.error.file_too_large": "文件超过 {limit} 字节",
        "voip.error.file_empty": "文件没有表头行",
        "voip.error.file_no_rows": "文件只有表头，没有数据行",
        "voip.error.file_too_many_rows": "文件超过 {limit} 行",
        "voip.error.header_columns": "表头必须是 "
        "number,name,department,password[,class_of_service]，实际为 {got}",
        "voip.error.row_fields": "该行有 {got} 个字段，表头有 {expected} 个",
        "voip.error.row_unreadable": "该行无法按 CSV 读取：{detail}",
        "voip.error.directory_changed": "导入期间分机目录发生了变化，未导入任何分机，请重试",
    },
}

DEMO_EXTENSIONS = [
    ("1001", "张伟 Zhang Wei", "MAYOR", "national"),
    ("1002", "李娜 Li Na", "EMERG", "local"),
    ("2001", "王芳 Wang Fang", "FIN", "internal"),
    ("3001", "陈静 Chen Jing", "IT", "international"),
]

# Also the order of the console's navigation.
SETUP_ORDER = 20


VOIP_SERVER = web.AppKey("voip_server", VoipServer)
PBX = web.AppKey("voip_pbx", Pbx)


def setup(app: web.Application) -> None:
    app[I18N].add(MESSAGES)
    app[I18N].add(cost_console.MESSAGES)
    app[I18N].add(features_console.MESSAGES)
    app[I18N].add(trunk_console.MESSAGES)
    app[CONSOLE].add_templates("voip", Path(__file__).parent / "templates")
    api.mount(app)
    cost_console.mount(app)
    # The SIP server starts after the context (core's lifecycle wraps every other).
    server = VoipServer(app[CTX])
    app[VOIP_SERVER] = server
    app.router.add_get(WS_PATH, server.websocket)
    app.cleanup_ctx.append(server.lifecycle)
    # Media workers and the router start once the SIP core runs, and stop before it.
    pbx = Pbx(app[CTX], server)
    app[PBX] = pbx
    app.cleanup_ctx.append(pbx.lifecycle)
    # Calls the exchange places itself (voip.place_call): after the PBX, stopped before it.
    originations = Originations(app[CTX], server, pbx)
    app[ORIGINATIONS] = originations
    app.cleanup_ctx.append(originations.lifecycle)
    features_api.mount(app, lambda: pbx.features)
    features_console.mount(app, lambda: pbx.features)
    trunk_console.mount(app, lambda: pbx)


async def seed_demo(ctx: AppContext, report: DemoReport) -> None:
    lines = []
    async with ctx.db.session() as session:
        for number, name, department, cos in DEMO_EXTENSIONS:
            password = report.secret(f"ext:{number}", report.new_password)
            exists = await session.scalar(select(Extension).where(Extension.number == number))
            if exists is None:
                await service.add_extension(
                    session,
                    number=number,
                    name=name,
                    password=password,
                    realm=ctx.settings.sip_realm,
                    department_code=department,
                    class_of_service=ClassOfService(cos),
                )
            lines.append(f"extension    {number} / {password}  ({name})")
    report.add(f"SIP          {ctx.settings.sip_realm} on port {ctx.settings.sip_port} (UDP/TCP)")
    for line in lines:
        report.add(line)


__all__ = [
    "PBX",
    "SETUP_ORDER",
    "VOIP_SERVER",
    "CallOutcome",
    "CallResult",
    "CollectDigits",
    "VoipServer",
    "add_cli",
    "place_call",
    "seed_demo",
    "setup",
]
