"""The console page of the exchange: directory, CSV import, who is registered, live calls.

Plain HTML forms (each carries the session's ``csrf_token``), so the page works in
any room PC's browser without scripts. A refused form is shown again with the
reason in the reader's language and an HTTP 422; a successful one redirects (303)
so that reloading the page does not post twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Identity, audit, identity_of
from core.console import ConsolePage
from core.i18n import LANG
from core.models import Department, Role
from core.web import CONSOLE, CTX, I18N, client_address
from voip import csv_import, service
from voip.models import ClassOfService

WRITERS = (Role.ADMIN, Role.OPERATOR)

PAGE = ConsolePage(
    key="voip",
    title={"zh": "电话交换", "en": "Telephony"},
    summary={"zh": "分机、部门、通话与话费", "en": "Extensions, departments, calls and costs"},
    path="/console/voip",
    template="voip/index.html",
)


def mount(app: web.Application) -> None:
    ctx = app[CTX]
    console = app[CONSOLE]
    translations = app[I18N]
    router = app.router
    realm = ctx.settings.sip_realm

    def explain(request: web.Request, code: str, params: Mapping[str, Any]) -> str:
        return translations.get(request[LANG], f"voip.error.{code}").format(**params)

    def field_label(request: web.Request, field: str) -> str:
        return translations.get(request[LANG], f"voip.field.{field}")

    def refusal(request: web.Request, exc: service.DirectoryError) -> str:
        label = field_label(request, exc.field)
        return f"{label}: {explain(request, exc.code, exc.params)}"

    def signed_in(request: web.Request, *roles: Role) -> Identity:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound(f"/login?next={PAGE.path}")
        if roles and not identity.has_role(*roles):
            raise web.HTTPForbidden(text="your role may not change the directory")
        return identity

    async def overview(request: web.Request) -> dict[str, Any]:
        identity = identity_of(request)
        async with ctx.db.session() as session:
            extensions = await service.list_extensions(session)
            departments = (
                await session.scalars(select(Department).order_by(Department.code))
            ).all()
            registrations = await service.list_registrations(session)
        return {
            "extensions": extensions,
            "departments": departments,
            "classes": list(ClassOfService),
            "registrations": registrations,
            "calls": await service.live_calls(ctx.state),
            "local_time": lambda moment: service.shown(moment, ctx.settings.zone),
            "can_edit": identity is not None and identity.has_role(*WRITERS),
            "notice": _notice(request),
            "add_error": None,
            "add_form": {},
            "import_report": None,
            "import_rows": [],
        }

    async def render_overview(
        request: web.Request, status: int = 200, **overrides: Any
    ) -> web.Response:
        values = await overview(request)
        values.update(overrides)
        return await console.render(request, PAGE.template, {"page": PAGE, **values}, status=status)

    async def index(request: web.Request) -> Mapping[str, Any]:
        return await overview(request)

    console.add_page(router, PAGE, index)

    async def add(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, *WRITERS)
        form = await request.post()
        values = {
            key: str(form.get(key, ""))
            for key in ("number", "name", "department", "class_of_service", "password")
        }
        values["number"] = values["number"].strip()
        try:
            async with ctx.db.session() as session:
                await service.add_extension(
                    session,
                    number=values["number"],
                    name=values["name"],
                    password=values["password"],
                    realm=realm,
                    department_code=values["department"] or None,
                    class_of_service=service.parse_class_of_service(
                        values["class_of_service"] or ClassOfService.INTERNAL.value
                    ),
                )
                await audit_write(
                    session, identity, "voip.extension.add", values["number"], request
                )
        except service.DirectoryError as exc:
            values.pop("password")  # never echoed back into the page
            return await render_overview(
                request, status=422, add_error=refusal(request, exc), add_form=values
            )
        raise web.HTTPSeeOther(f"{PAGE.path}?added={values['number']}")

    router.add_post(f"{PAGE.path}/extensions", add)

    async def edit_page(request: web.Request) -> web.StreamResponse:
        signed_in(request)
        return await render_edit(request, request.match_info["number"])

    async def render_edit(
        request: web.Request, number: str, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        identity = signed_in(request)
        async with ctx.db.session() as session:
            try:
                extension = await service.get_extension(session, number)
            except service.DirectoryError:
                raise web.HTTPNotFound(text=f"no extension {number}") from None
            departments = (
                await session.scalars(select(Department).order_by(Department.code))
            ).all()
        return await console.render(
            request,
            "voip/edit.html",
            {
                "page": PAGE,
                "extension": extension,
                "departments": departments,
                "classes": list(ClassOfService),
                "can_edit": identity.has_role(*WRITERS),
                "error": error,
            },
            status=status,
        )

    async def edit(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, *WRITERS)
        number = request.match_info["number"]
        form = await request.post()
        password = str(form.get("password", ""))
        try:
            change = service.ExtensionEdit(
                name=str(form.get("name", "")),
                department_code=str(form.get("department", "")) or None,
                class_of_service=service.parse_class_of_service(
                    str(form.get("class_of_service", ""))
                ),
                enabled=form.get("enabled") == "on",
                # An empty password field means "keep the password".
                password=password if password else service.KEEP,
            )
            async with ctx.db.session() as session:
                _, changed = await service.edit_extension(session, number, change, realm=realm)
                await audit_write(
                    session, identity, "voip.extension.edit", number, request, changed=changed
                )
        except service.DirectoryError as exc:
            if exc.code == "number_unknown":
                raise web.HTTPNotFound(text=str(exc)) from None
            return await render_edit(request, number, refusal(request, exc), status=422)
        raise web.HTTPSeeOther(f"{PAGE.path}?saved={number}")

    router.add_get(f"{PAGE.path}/extensions/{{number}}", edit_page)
    router.add_post(f"{PAGE.path}/extensions/{{number}}", edit)

    async def remove(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, *WRITERS)
        number = request.match_info["number"]
        try:
            async with ctx.db.session() as session:
                await service.remove_extension(session, number)
                await audit_write(session, identity, "voip.extension.remove", number, request)
        except service.DirectoryError:
            raise web.HTTPNotFound(text=f"no extension {number}") from None
        raise web.HTTPSeeOther(f"{PAGE.path}?removed={number}")

    router.add_post(f"{PAGE.path}/extensions/{{number}}/remove", remove)

    async def import_csv(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, *WRITERS)
        form = await request.post()
        upload = form.get("file")
        if isinstance(upload, web.FileField):
            data = upload.file.read(csv_import.MAX_CSV_BYTES + 1)
        elif isinstance(upload, bytes | bytearray):  # a part sent without a filename
            data = bytes(upload[: csv_import.MAX_CSV_BYTES + 1])
        else:
            data = b""
        report = await csv_import.import_and_audit(
            ctx, bytes(data), identity.subject, client_address(request)
        )
        rows = [
            {
                "line": error.line,
                "number": error.number,
                "field": field_label(request, error.field),
                "reason": explain(request, error.code, error.params),
            }
            for error in report.errors
        ]
        return await render_overview(
            request, status=200 if report.ok else 422, import_report=report, import_rows=rows
        )

    router.add_post(f"{PAGE.path}/import", import_csv)

    async def back_to_page(request: web.Request) -> web.StreamResponse:
        # The language switch reloads the current address: for a form's answer, the page.
        raise web.HTTPFound(PAGE.path)

    router.add_get(f"{PAGE.path}/extensions", back_to_page)
    router.add_get(f"{PAGE.path}/import", back_to_page)


async def audit_write(
    session: AsyncSession,
    identity: Identity,
    action: str,
    number: str,
    request: web.Request,
    **detail: Any,
) -> None:
    await audit(session, identity.subject, action, number, client_address(request), **detail)


def _notice(request: web.Request) -> tuple[str, str] | None:
    """What the last form did, from the redirect's query: (message key, number)."""
    for key in ("added", "saved", "removed"):
        number = request.query.get(key, "")
        if service.NUMBER_PATTERN.match(number):
            return f"voip.notice.{key}", number
    return None
