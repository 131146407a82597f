"""The carrier trunk in the console and the JSON API: its state and its DID table.

The trunk's connection (carrier host, account, registration) comes from the
settings file and is only shown; the DID table (which outside number rings which
extension, ring group or IVR menu) is edited here, in the API and with
``unicomm trunk did``. Reading is for any signed-in staff member; changing is for
administrators and operators, and every change is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.api import ApiError
from core.auth import Identity, audit, identity_of
from core.console import ConsolePage, FormRefused
from core.i18n import LANG
from core.models import Role
from core.web import API, CONSOLE, CTX, client_address

from .did import MAX_NAME, Did, DidKind, check, normalise, target_exists
from .pbx import Pbx

WRITERS = (Role.ADMIN, Role.OPERATOR)

PAGE = ConsolePage(
    key="voip_trunk",
    title={"zh": "中继线路", "en": "Carrier trunk"},
    summary={"zh": "运营商中继状态与来电号码（DID）路由", "en": "Trunk state and inbound DIDs"},
    path="/console/voip/trunk",
    template="voip/trunk.html",
    parent="voip",
)


class DidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DidKind
    target: str = Field(pattern=r"^[0-9]{2,16}$", description="extension, group or menu number")
    name: str = Field("", max_length=MAX_NAME)


class DidOut(BaseModel):
    did: str
    kind: DidKind
    target: str
    name: str


class TrunkOut(BaseModel):
    configured: bool
    host: str
    port: int
    domain: str
    username: str
    registers: bool
    registered: bool
    last_status: int | None
    public_host: str


def did_out(entry: Did) -> DidOut:
    return DidOut(did=entry.did, kind=entry.kind, target=entry.target, name=entry.name)


async def save_did(app: web.Application, pbx: Pbx, entry: Did, actor: str, source: str) -> Did:
    """Check, save and audit one entry (the console's and the API's way)."""
    ctx = app[CTX]
    try:
        entry = check(entry)
    except ValueError as error:
        raise FormRefused("voip.trunk.error.format", detail=str(error)) from None
    async with ctx.db.session() as session:
        if not await target_exists(session, entry.kind, entry.target):
            raise FormRefused("voip.trunk.error.target", target=entry.target, kind=entry.kind.value)
    saved = await pbx.dids.save(entry)
    async with ctx.db.session() as session:
        await audit(
            session,
            actor,
            "voip.trunk_did.save",
            saved.did,
            source,
            kind=saved.kind.value,
            to=saved.target,
        )
    return saved


async def remove_did(app: web.Application, pbx: Pbx, did: str, actor: str, source: str) -> bool:
    if not await pbx.dids.remove(did):
        return False
    async with app[CTX].db.session() as session:
        await audit(session, actor, "voip.trunk_did.remove", normalise(did), source)
    return True


def trunk_state(app: web.Application, pbx: Pbx) -> TrunkOut:
    settings = app[CTX].settings
    trunk = pbx.trunk
    return TrunkOut(
        configured=bool(settings.voip_trunk_host),
        host=settings.voip_trunk_host,
        port=settings.voip_trunk_port,
        domain=settings.voip_trunk_domain or settings.voip_trunk_host,
        username=settings.voip_trunk_username,
        registers=settings.voip_trunk_register,
        registered=bool(trunk and trunk.registered),
        last_status=trunk.last_status if trunk else None,
        public_host=trunk.public_host if trunk else settings.voip_trunk_public_host,
    )


def mount(app: web.Application, pbx: Callable[[], Pbx]) -> None:
    mount_api(app, pbx)
    mount_console(app, pbx)


def mount_api(app: web.Application, pbx: Callable[[], Pbx]) -> None:
    api = app[API]
    router = app.router

    async def get_trunk(request: web.Request, identity: Identity) -> TrunkOut:
        return trunk_state(app, pbx())

    api.add(
        router,
        "GET",
        "/api/voip/trunk",
        get_trunk,
        summary="The carrier trunk: where it goes and whether it is registered",
        tag="voip",
        response=TrunkOut,
    )

    async def list_dids(request: web.Request, identity: Identity) -> list[DidOut]:
        return [did_out(entry) for entry in pbx().dids.all()]

    api.add(
        router,
        "GET",
        "/api/voip/trunk/dids",
        list_dids,
        summary="The trunk's DIDs and where their calls go",
        tag="voip",
        response=list[DidOut],
    )

    async def put_did(request: web.Request, identity: Identity, body: DidIn) -> DidOut:
        entry = Did(request.match_info["did"], body.kind, body.target, body.name)
        try:
            saved = await save_did(app, pbx(), entry, identity.subject, client_address(request))
        except FormRefused as refused:
            field = "did" if refused.key.endswith("format") else "target"
            message = refused.params.get("detail") or f"no {body.kind.value} {body.target}"
            raise ApiError(422, str(message), [{"field": field}]) from None
        return did_out(saved)

    api.add(
        router,
        "PUT",
        "/api/voip/trunk/dids/{did}",
        put_did,
        summary="Point a DID at an extension, a ring group or an IVR menu",
        tag="voip",
        roles=WRITERS,
        body=DidIn,
        response=DidOut,
    )

    async def delete_did(request: web.Request, identity: Identity) -> dict[str, bool]:
        did = request.match_info["did"]
        if not await remove_did(app, pbx(), did, identity.subject, client_address(request)):
            raise ApiError(404, f"no DID {did}")
        return {"deleted": True}

    api.add(
        router,
        "DELETE",
        "/api/voip/trunk/dids/{did}",
        delete_did,
        summary="Remove a DID (its calls get 404)",
        tag="voip",
        roles=WRITERS,
    )


def mount_console(app: web.Application, pbx: Callable[[], Pbx]) -> None:
    console = app[CONSOLE]
    router = app.router

    def writer(request: web.Request) -> Identity:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound(f"/login?next={PAGE.path}")
        if not identity.has_role(*WRITERS):
            raise web.HTTPForbidden(text="your role may not change the trunk")
        return identity

    def overview(request: web.Request) -> dict[str, Any]:
        identity = identity_of(request)
        return {
            "page": PAGE,
            "trunk": trunk_state(app, pbx()),
            "dids": pbx().dids.all(),
            "kinds": list(DidKind),
            "can_edit": identity is not None and identity.has_role(*WRITERS),
            "notice": request.query.get("saved", "")[:24],
            "removed": request.query.get("removed", "")[:24],
            "error": None,
        }

    async def page(request: web.Request) -> Mapping[str, Any]:
        return overview(request)

    console.add_page(router, PAGE, page)

    async def save(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        form = await request.post()
        kind = str(form.get("kind", ""))
        try:
            if kind not in {k.value for k in DidKind}:
                raise FormRefused("voip.trunk.error.format", detail=kind)
            entry = Did(
                str(form.get("did", "")),
                DidKind(kind),
                str(form.get("target", "")).strip(),
                str(form.get("name", "")),
            )
            saved = await save_did(app, pbx(), entry, identity.subject, client_address(request))
        except FormRefused as refused:
            values = overview(request)
            text = console.translations.get(request[LANG], refused.key)
            params = dict(refused.params)
            if "kind" in params:
                kind_text = console.translations.get(request[LANG], f"voip.trunk.kind.{kind}")
                params["kind"] = kind_text
            values["error"] = text.format(**params)
            return await console.render(request, PAGE.template, values, status=422)
        raise web.HTTPSeeOther(f"{PAGE.path}?saved={saved.did}")

    async def remove(request: web.Request) -> web.StreamResponse:
        identity = writer(request)
        did = request.match_info["did"]
        if not await remove_did(app, pbx(), did, identity.subject, client_address(request)):
            raise web.HTTPNotFound(text=f"no DID {did}")
        raise web.HTTPSeeOther(f"{PAGE.path}?removed={normalise(did)}")

    async def back_to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PAGE.path)  # the language switch reloads a form's address

    router.add_post(f"{PAGE.path}/dids", save)
    router.add_post(f"{PAGE.path}/dids/{{did}}/remove", remove)
    router.add_get(f"{PAGE.path}/dids", back_to_page)


MESSAGES = {
    "en": {
        "voip.trunk.state": "Connection",
        "voip.trunk.not_configured": "No trunk is configured (voip_trunk_host is empty): "
        "outside calls get 503, the DIDs below take effect once it is.",
        "voip.trunk.carrier": "Carrier",
        "voip.trunk.domain": "Domain",
        "voip.trunk.account": "Account",
        "voip.trunk.registration": "Registration",
        "voip.trunk.registered": "registered",
        "voip.trunk.not_registered": "not registered (last answer: {status})",
        "voip.trunk.no_register": "not used (the carrier sends to our address)",
        "voip.trunk.public_host": "Our address for the carrier",
        "voip.trunk.dids": "Inbound numbers (DID)",
        "voip.trunk.dids_help": "A call from the carrier to one of these numbers rings "
        "its target; any other number is answered 404.",
        "voip.trunk.did": "DID",
        "voip.trunk.kind": "Goes to",
        "voip.trunk.kind.extension": "extension",
        "voip.trunk.kind.ring_group": "ring group",
        "voip.trunk.kind.ivr": "IVR menu",
        "voip.trunk.target": "Number",
        "voip.trunk.name": "Description",
        "voip.trunk.save": "Save",
        "voip.trunk.remove": "Remove",
        "voip.trunk.none": "No DID yet.",
        "voip.trunk.saved": "Saved: {did}",
        "voip.trunk.removed": "Removed: {did}",
        "voip.trunk.error.format": "DID not saved: {detail}",
        "voip.trunk.error.target": "DID not saved: there is no {kind} {target}",
    },
    "zh": {
        "voip.trunk.state": "连接",
        "voip.trunk.not_configured": "尚未配置中继（voip_trunk_host 为空）：外线呼叫返回 503，"
        "下列号码在配置后生效。",
        "voip.trunk.carrier": "运营商",
        "voip.trunk.domain": "域",
        "voip.trunk.account": "账号",
        "voip.trunk.registration": "注册",
        "voip.trunk.registered": "已注册",
        "voip.trunk.not_registered": "未注册（最近应答：{status}）",
        "voip.trunk.no_register": "不注册（运营商直接发送到本机地址）",
        "voip.trunk.public_host": "对运营商显示的地址",
        "voip.trunk.dids": "来电号码（DID）",
        "voip.trunk.dids_help": "运营商呼入下列号码时振铃对应目标；其他号码应答 404。",
        "voip.trunk.did": "DID 号码",
        "voip.trunk.kind": "转到",
        "voip.trunk.kind.extension": "分机",
        "voip.trunk.kind.ring_group": "振铃组",
        "voip.trunk.kind.ivr": "语音导航菜单",
        "voip.trunk.target": "号码",
        "voip.trunk.name": "说明",
        "voip.trunk.save": "保存",
        "voip.trunk.remove": "删除",
        "voip.trunk.none": "暂无 DID。",
        "voip.trunk.saved": "已保存：{did}",
        "voip.trunk.removed": "已删除：{did}",
        "voip.trunk.error.format": "DID 未保存：{detail}",
        "voip.trunk.error.target": "DID 未保存：没有{kind} {target}",
    },
}
