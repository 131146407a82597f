"""The console page of the PBX features: forwarding/DND, ring groups, voicemail, IVR menus.

Server-rendered like the directory page (:mod:`voip.console`): plain forms with the
session's ``csrf_token``, a refused form shown again with the reason and 422, a
saved one answered by a redirect (303) so a reload does not post twice. Voicemail
plays through the JSON API's audio route (``/api/voip/voicemail/messages/<id>/audio``),
which checks the same session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import select

from core.auth import Identity, audit, identity_of
from core.console import ConsolePage, FormRefused
from core.i18n import LANG
from core.models import Role
from core.web import CONSOLE, CTX, client_address
from voip import service

from .ivr import IvrMenu, parse_options
from .models import VoicemailRow
from .ringgroups import RingGroup, Strategy, parse_members
from .service import PbxFeatures

log = structlog.get_logger("voip.features")

WRITERS = (Role.ADMIN, Role.OPERATOR)
RECORDING_READERS = (Role.ADMIN, Role.DUTY_OFFICER)  # as the API's (voip.features.api)
TARGET = re.compile(r"^[0-9]{0,16}$")  # a forwarding target, or empty for "off"
PICKUP_GROUP = re.compile(r"^[A-Za-z0-9_.-]{0,32}$")

PAGE = ConsolePage(
    key="voip_features",
    title={"zh": "电话功能", "en": "Call features"},
    summary={
        "zh": "呼叫转移、免打扰、代接组、通话录音、振铃组、语音信箱与语音导航",
        "en": "Forwarding, DND, pickup groups, call recording, ring groups, voicemail, IVR",
    },
    path="/console/voip/features",
    template="voip/features.html",
    parent="voip",
)


def mount(app: web.Application, features: Callable[[], PbxFeatures]) -> None:
    ctx = app[CTX]
    console = app[CONSOLE]
    router = app.router

    def writer(request: web.Request) -> Identity:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound(f"/login?next={PAGE.path}")
        if not identity.has_role(*WRITERS):
            raise web.HTTPForbidden(text="your role may not change call features")
        return identity

    async def overview(request: web.Request) -> dict[str, Any]:
        pbx = features()
        identity = identity_of(request)
        async with ctx.db.session() as session:
            extensions = await service.list_extensions(session)
            messages = (
                await session.scalars(
                    select(VoicemailRow).order_by(VoicemailRow.mailbox, VoicemailRow.created_at)
                )
            ).all()
        can_hear = identity is not None and identity.has_role(*RECORDING_READERS)
        return {
            "page": PAGE,
            "local_time": lambda moment: service.shown(moment, ctx.settings.zone),
            "extensions": [(e, pbx.store.get(e.number)) for e in extensions],
            "recordings": await pbx.recordings.recent() if can_hear else [],
            "can_hear": can_hear,
            "groups": pbx.groups.all(),
            "strategies": list(Strategy),
            "menus": pbx.ivr.all(),
            "messages": messages,
            "can_edit": identity is not None and identity.has_role(*WRITERS),
            "notice": request.query.get("saved", "")[:16],
            "error": None,
        }

    async def page(request: web.Request) -> Mapping[str, Any]:
        return await overview(request)

    console.add_page(router, PAGE, page)

    async def refused(request: web.Request, error: FormRefused) -> web.Response:
        values = await overview(request)
        text = console.translations.get(request[LANG], error.key)
        values["error"] = text.format(**error.params)
        return await console.render(request, PAGE.template, values, status=422)

    async def audited(identity: Identity, action: str, target: str, request: web.Request) -> None:
        async with ctx.db.session() as session:
            await audit(session, identity.subject, action, target, client_address(request))

    def saved(what: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(f"{PAGE.path}?saved={what}")

    async def save_settings(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        form = await request.post()
        number = str(form.get("number", ""))
        try:
            changes: dict[str, Any] = {"dnd": form.get("dnd") == "on"}
            for name in ("forward_always", "forward_busy", "forward_no_answer"):
                value = str(form.get(name, "")).strip()
                if not TARGET.match(value) or value == number:
                    raise FormRefused("voip.features.error.target", value=value)
                changes[name] = value
            seconds = str(form.get("no_answer_seconds", "20")).strip()
            if not seconds.isdigit() or not 5 <= int(seconds) <= 120:
                raise FormRefused("voip.features.error.seconds")
            changes["no_answer_seconds"] = int(seconds)
            if await features().store.update(number, **changes) is None:
                raise FormRefused("voip.features.error.no_extension", number=number)
        except FormRefused as error:
            return await refused(request, error)
        await audited(identity, "voip.call_settings.change", number, request)
        raise saved(number)

    async def save_recording(request: web.Request) -> web.StreamResponse:
        """An extension's pickup group and its record-all-calls switch."""
        identity = writer(request)
        form = await request.post()
        number = str(form.get("number", ""))
        group = str(form.get("pickup_group", "")).strip()
        try:
            if not PICKUP_GROUP.match(group):
                raise FormRefused("voip.features.error.pickup_group", value=group)
            changes = {"record_calls": form.get("record_calls") == "on", "pickup_group": group}
            if await features().store.update(number, **changes) is None:
                raise FormRefused("voip.features.error.no_extension", number=number)
        except FormRefused as error:
            return await refused(request, error)
        await audited(identity, "voip.call_settings.change", number, request)
        raise saved(number)

    async def save_group(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        form = await request.post()
        try:
            seconds = str(form.get("ring_seconds", "15")).strip()
            strategy = str(form.get("strategy", ""))
            if strategy not in {s.value for s in Strategy}:
                raise FormRefused("voip.features.error.group", detail=strategy)
            group = RingGroup(
                number=str(form.get("number", "")).strip(),
                name=str(form.get("name", "")).strip(),
                strategy=Strategy(strategy),
                members=parse_members(str(form.get("members", ""))),
                ring_seconds=int(seconds) if seconds.isdigit() else 0,
            )
            if not service.NUMBER_PATTERN.match(group.number) or not group.name:
                raise FormRefused("voip.features.error.group", detail=group.number)
            if not 5 <= group.ring_seconds <= 120:
                raise FormRefused("voip.features.error.seconds")
        except ValueError as error:
            if not isinstance(error, FormRefused):
                error = FormRefused("voip.features.error.group", detail=str(error))
            return await refused(request, error)
        await features().groups.save(group)
        await audited(identity, "voip.ring_group.save", group.number, request)
        raise saved(group.number)

    async def remove_group(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        number = request.match_info["number"]
        if not await features().groups.remove(number):
            raise web.HTTPNotFound(text=f"no ring group {number}")
        await audited(identity, "voip.ring_group.remove", number, request)
        raise saved(number)

    async def remove_message(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        try:
            message_id = int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not await features().voicemail.delete(message_id):
            raise web.HTTPNotFound(text=f"no message {message_id}")
        await audited(identity, "voip.voicemail.delete", str(message_id), request)
        raise saved(str(message_id))

    async def save_menu(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        form = await request.post()
        ivr = features().ivr
        try:
            timeout, retries = (str(form.get(k, "")).strip() for k in ("timeout", "retries"))
            menu = IvrMenu(
                number=str(form.get("number", "")).strip(),
                name=str(form.get("name", "")).strip(),
                greeting=str(form.get("greeting", "")).strip(),
                options=parse_options(str(form.get("options", ""))),
                language=str(form.get("language", "zh")),
                timeout_seconds=int(timeout) if timeout.isdigit() else 0,
                retries=int(retries) if retries.isdigit() else -1,
            )
            await ivr.save(menu)  # checks the menu first (ValueError)
        except ValueError as error:
            return await refused(
                request, FormRefused("voip.features.error.menu", detail=str(error))
            )
        try:
            await ivr.phrase(menu, "greeting")  # spoken now, not while the first caller waits
        except Exception:
            log.exception("ivr.prompt_failed", menu=menu.number)
        await audited(identity, "voip.ivr_menu.save", menu.number, request)
        raise saved(menu.number)

    async def remove_menu(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        number = request.match_info["number"]
        if not await features().ivr.remove(number):
            raise web.HTTPNotFound(text=f"no IVR menu {number}")
        await audited(identity, "voip.ivr_menu.remove", number, request)
        raise saved(number)

    async def back_to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PAGE.path)  # the language switch reloads a form's address

    router.add_post(f"{PAGE.path}/settings", save_settings)
    router.add_post(f"{PAGE.path}/recording", save_recording)
    router.add_post(f"{PAGE.path}/groups", save_group)
    router.add_post(f"{PAGE.path}/groups/{{number}}/remove", remove_group)
    router.add_post(f"{PAGE.path}/voicemail/{{id}}/remove", remove_message)
    router.add_post(f"{PAGE.path}/ivr", save_menu)
    router.add_post(f"{PAGE.path}/ivr/{{number}}/remove", remove_menu)
    for path in ("settings", "recording", "groups", "ivr"):
        router.add_get(f"{PAGE.path}/{path}", back_to_page)


MESSAGES = {
    "en": {
        "voip.features.settings": "Forwarding and do not disturb",
        "voip.features.extension": "Extension",
        "voip.features.dnd": "DND",
        "voip.features.forward_always": "Forward always",
        "voip.features.forward_busy": "Forward when busy",
        "voip.features.forward_no_answer": "Forward on no answer",
        "voip.features.no_answer_seconds": "after (s)",
        "voip.features.save": "Save",
        "voip.features.groups": "Ring groups",
        "voip.features.number": "Number",
        "voip.features.name": "Name",
        "voip.features.strategy": "Strategy",
        "voip.features.strategy.simultaneous": "all at once",
        "voip.features.strategy.ordered": "in order",
        "voip.features.members": "Members",
        "voip.features.ring_seconds": "Ring (s)",
        "voip.features.voicemail": "Voicemail boxes",
        "voip.features.mailbox": "Mailbox",
        "voip.features.caller": "From",
        "voip.features.when": "When",
        "voip.features.seconds": "Seconds",
        "voip.features.play": "Play",
        "voip.features.delete": "Delete",
        "voip.features.new": "new",
        "voip.features.ivr": "IVR menus",
        "voip.features.greeting": "Greeting",
        "voip.features.options": "Keys (1=1002, 2=1003)",
        "voip.features.language": "Language",
        "voip.features.timeout": "Wait (s)",
        "voip.features.retries": "Retries",
        "voip.features.none": "None yet.",
        "voip.features.saved": "Saved: {what}",
        "voip.features.error.target": "Forwarding target {value!r}: an extension or outside "
        "number (digits), not the extension itself",
        "voip.features.error.seconds": "Seconds must be between 5 and 120",
        "voip.features.error.no_extension": "No extension {number}",
        "voip.features.error.group": "Ring group not saved: {detail}",
        "voip.features.error.menu": "IVR menu not saved: {detail}",
        "voip.features.recording": "Call pickup and recording",
        "voip.features.pickup_group": "Pickup group",
        "voip.features.pickup_group.hint": "empty: the department (*8 picks up, *8 + number "
        "one phone)",
        "voip.features.record_calls": "Record all calls",
        "voip.features.recording.on": "recording",
        "voip.features.recordings": "Call recordings",
        "voip.features.peer": "Other party",
        "voip.features.direction": "Direction",
        "voip.features.direction.outgoing": "outgoing",
        "voip.features.direction.incoming": "incoming",
        "voip.features.download": "Download",
        "voip.features.error.pickup_group": "Pickup group {value!r}: letters, digits, . _ - "
        "(at most 32)",
    },
    "zh": {
        "voip.features.settings": "呼叫转移与免打扰",
        "voip.features.extension": "分机",
        "voip.features.dnd": "免打扰",
        "voip.features.forward_always": "无条件转移",
        "voip.features.forward_busy": "遇忙转移",
        "voip.features.forward_no_answer": "无应答转移",
        "voip.features.no_answer_seconds": "等待（秒）",
        "voip.features.save": "保存",
        "voip.features.groups": "振铃组",
        "voip.features.number": "号码",
        "voip.features.name": "名称",
        "voip.features.strategy": "振铃方式",
        "voip.features.strategy.simultaneous": "同时振铃",
        "voip.features.strategy.ordered": "依次振铃",
        "voip.features.members": "成员",
        "voip.features.ring_seconds": "振铃（秒）",
        "voip.features.voicemail": "语音信箱",
        "voip.features.mailbox": "信箱",
        "voip.features.caller": "来电",
        "voip.features.when": "时间",
        "voip.features.seconds": "时长（秒）",
        "voip.features.play": "播放",
        "voip.features.delete": "删除",
        "voip.features.new": "未听",
        "voip.features.ivr": "语音导航菜单",
        "voip.features.greeting": "欢迎词",
        "voip.features.options": "按键（1=1002, 2=1003）",
        "voip.features.language": "语言",
        "voip.features.timeout": "等待（秒）",
        "voip.features.retries": "重试次数",
        "voip.features.none": "暂无。",
        "voip.features.saved": "已保存：{what}",
        "voip.features.error.target": "转移目标 {value!r}：应为分机或外线号码（数字），"
        "且不能是本分机",
        "voip.features.error.seconds": "秒数须在 5 到 120 之间",
        "voip.features.error.no_extension": "没有分机 {number}",
        "voip.features.error.group": "振铃组未保存：{detail}",
        "voip.features.error.menu": "语音导航菜单未保存：{detail}",
        "voip.features.recording": "代接与通话录音",
        "voip.features.pickup_group": "代接组",
        "voip.features.pickup_group.hint": "留空即按部门（*8 代接本组来电，"
        "*8 加分机号代接指定分机）",
        "voip.features.record_calls": "全部通话录音",
        "voip.features.recording.on": "录音中",
        "voip.features.recordings": "通话录音",
        "voip.features.peer": "对方号码",
        "voip.features.direction": "方向",
        "voip.features.direction.outgoing": "呼出",
        "voip.features.direction.incoming": "呼入",
        "voip.features.download": "下载",
        "voip.features.error.pickup_group": "代接组 {value!r}：只能含字母、数字和 . _ -"
        "（最多 32 个字符）",
    },
}
