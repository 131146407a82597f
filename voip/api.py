"""JSON routes of the exchange: directory, CSV import, registrations, live calls, CDR.

Thin on purpose: each handler parses, calls ``voip.service`` (or the import and
export modules), audits writes and shapes the answer. Reading is for any
signed-in staff member; changing the directory is for administrators and operators.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.api import ApiError
from core.auth import Identity, audit
from core.models import Role
from core.web import API, CTX, client_address
from voip import cdr_export, console, csv_import, service
from voip.models import ClassOfService

WRITERS = (Role.ADMIN, Role.OPERATOR)
NUMBER = r"^[0-9]{2,8}$"


class ExtensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(pattern=NUMBER)
    name: str = Field(min_length=1, max_length=service.MAX_NAME)
    password: str = Field(min_length=service.MIN_SIP_PASSWORD, max_length=service.MAX_SIP_PASSWORD)
    department: str | None = Field(None, description="department code")
    class_of_service: ClassOfService = ClassOfService.INTERNAL


class ExtensionEditIn(BaseModel):
    """Only the fields present change; ``"department": null`` removes the department."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=service.MAX_NAME)
    department: str | None = Field(None, description="department code; null for none")
    class_of_service: ClassOfService | None = None
    enabled: bool | None = None
    password: str | None = Field(
        None,
        min_length=service.MIN_SIP_PASSWORD,
        max_length=service.MAX_SIP_PASSWORD,
        description="a new SIP password; only its digest HA1 values are kept",
    )


class ExtensionOut(BaseModel):
    number: str
    name: str
    department: str | None
    class_of_service: ClassOfService
    enabled: bool


class RowErrorOut(BaseModel):
    line: int = Field(description="line in the file (the header is line 1; 0: the whole file)")
    field: str
    reason: str
    number: str


class ImportReportOut(BaseModel):
    rows: int
    imported: list[str]
    failed_lines: list[int]
    errors: list[RowErrorOut]


class RegistrationOut(BaseModel):
    number: str
    name: str
    contact: str
    source: str = Field(description="ip:port the REGISTER came from")
    transport: str
    user_agent: str
    node: str
    registered_at: dt.datetime
    expires_at: dt.datetime
    expires_in_seconds: int


class LiveCallOut(BaseModel):
    call_id: str
    caller: str
    callee: str
    state: str
    started_at: dt.datetime | None
    answered_at: dt.datetime | None
    node: str


class CdrOut(BaseModel):
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


class MonthQuery(BaseModel):
    month: str = Field(
        pattern=cdr_export.MONTH_PATTERN.pattern, description="YYYY-MM (in the timezone setting)"
    )


def directory_refusal(exc: service.DirectoryError) -> ApiError:
    """The HTTP answer to a refused directory change, naming the field like a 422 does."""
    status = {"number_exists": 409, "number_unknown": 404}.get(exc.code, 422)
    return ApiError(status, str(exc), [{"field": exc.field, "message": exc.reason}])


def report_out(report: csv_import.ImportReport) -> ImportReportOut:
    return ImportReportOut(
        rows=report.rows,
        imported=report.imported,
        failed_lines=report.failed_lines,
        errors=[
            RowErrorOut(line=e.line, field=e.field, reason=e.reason, number=e.number)
            for e in report.errors
        ],
    )


async def read_csv_upload(request: web.Request) -> bytes:
    """The uploaded file: a multipart field ``file`` or a ``text/csv`` body, size-limited."""
    limit = csv_import.MAX_CSV_BYTES
    # Multipart framing adds a little around the file itself.
    if request.content_length is not None and request.content_length > limit + 16 * 1024:
        raise ApiError(413, f"file larger than {limit} bytes")
    if request.content_type == "multipart/form-data":
        upload = (await request.post()).get("file")
        data: bytes | bytearray
        if isinstance(upload, web.FileField):
            data = upload.file.read(limit + 1)
        elif isinstance(upload, bytes | bytearray):  # a part sent without a filename
            data = upload
        else:
            raise ApiError(422, "no file uploaded", [{"field": "file", "message": "required"}])
    elif request.content_type in ("text/csv", "text/plain"):
        data = bytearray()
        # read(n) answers with what has arrived, so read until the end or past the limit.
        while len(data) <= limit and (chunk := await request.content.read(limit + 1 - len(data))):
            data.extend(chunk)
    else:
        raise ApiError(415, "send the CSV as multipart/form-data (field `file`) or text/csv")
    if len(data) > limit:
        raise ApiError(413, f"file larger than {limit} bytes")
    return bytes(data)


def mount(app: web.Application) -> None:
    ctx = app[CTX]
    api = app[API]
    router = app.router
    realm = ctx.settings.sip_realm

    async def list_extensions(request: web.Request, identity: Identity) -> list[ExtensionOut]:
        async with ctx.db.session() as session:
            views = await service.list_extensions(session)
        return [ExtensionOut.model_validate(view, from_attributes=True) for view in views]

    api.add(
        router,
        "GET",
        "/api/voip/extensions",
        list_extensions,
        summary="List extensions",
        tag="voip",
        response=list[ExtensionOut],
    )

    async def get_extension(request: web.Request, identity: Identity) -> ExtensionOut:
        async with ctx.db.session() as session:
            try:
                view = await service.get_extension(session, request.match_info["number"])
            except service.DirectoryError as exc:
                raise directory_refusal(exc) from None
        return ExtensionOut.model_validate(view, from_attributes=True)

    api.add(
        router,
        "GET",
        "/api/voip/extensions/{number}",
        get_extension,
        summary="One extension",
        tag="voip",
        response=ExtensionOut,
    )

    async def add_extension(
        request: web.Request, identity: Identity, body: ExtensionIn
    ) -> ExtensionOut:
        async with ctx.db.session() as session:
            try:
                await service.add_extension(
                    session,
                    number=body.number,
                    name=body.name,
                    password=body.password,
                    realm=realm,
                    department_code=body.department,
                    class_of_service=body.class_of_service,
                )
                view = await service.get_extension(session, body.number)
            except service.DirectoryError as exc:
                raise directory_refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "voip.extension.add",
                body.number,
                client_address(request),
            )
        return ExtensionOut.model_validate(view, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/voip/extensions",
        add_extension,
        summary="Add an extension",
        tag="voip",
        roles=WRITERS,
        body=ExtensionIn,
        response=ExtensionOut,
        status=201,
    )

    async def edit_extension(
        request: web.Request, identity: Identity, body: ExtensionEditIn
    ) -> ExtensionOut:
        number = request.match_info["number"]
        given = body.model_fields_set
        if not given:
            raise ApiError(422, "nothing to change", [{"field": "(body)", "message": "empty"}])
        edit = service.ExtensionEdit(
            name=body.name if body.name is not None else service.KEEP,
            department_code=body.department if "department" in given else service.KEEP,
            class_of_service=body.class_of_service or service.KEEP,
            enabled=body.enabled if body.enabled is not None else service.KEEP,
            password=body.password if body.password is not None else service.KEEP,
        )
        async with ctx.db.session() as session:
            try:
                view, changed = await service.edit_extension(session, number, edit, realm=realm)
            except service.DirectoryError as exc:
                raise directory_refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "voip.extension.edit",
                number,
                client_address(request),
                changed=changed,
            )
        return ExtensionOut.model_validate(view, from_attributes=True)

    api.add(
        router,
        "PATCH",
        "/api/voip/extensions/{number}",
        edit_extension,
        summary="Change an extension (name, department, class of service, enabled, password)",
        tag="voip",
        roles=WRITERS,
        body=ExtensionEditIn,
        response=ExtensionOut,
    )

    async def remove_extension(request: web.Request, identity: Identity) -> dict[str, str]:
        number = request.match_info["number"]
        async with ctx.db.session() as session:
            try:
                await service.remove_extension(session, number)
            except service.DirectoryError as exc:
                raise directory_refusal(exc) from None
            await audit(
                session, identity.subject, "voip.extension.remove", number, client_address(request)
            )
        return {"removed": number}

    api.add(
        router,
        "DELETE",
        "/api/voip/extensions/{number}",
        remove_extension,
        summary="Remove an extension",
        tag="voip",
        roles=WRITERS,
    )

    async def import_extensions(request: web.Request, identity: Identity) -> ImportReportOut:
        data = await read_csv_upload(request)
        report = await csv_import.import_and_audit(
            ctx, data, identity.subject, client_address(request)
        )
        if not report.imported and report.rows == 0:
            # The file itself was refused (encoding, header, empty): nothing to report by row.
            out = report_out(report)
            raise ApiError(422, "the CSV file was refused", out.model_dump()["errors"])
        return report_out(report)

    api.add(
        router,
        "POST",
        "/api/voip/extensions/import",
        import_extensions,
        summary="Import extensions from CSV (multipart field `file`, or a text/csv body); "
        "good rows are added together, each bad row is reported by line",
        tag="voip",
        roles=WRITERS,
        response=ImportReportOut,
    )

    async def registrations(request: web.Request, identity: Identity) -> list[RegistrationOut]:
        async with ctx.db.session() as session:
            views = await service.list_registrations(session)
        return [RegistrationOut.model_validate(view, from_attributes=True) for view in views]

    api.add(
        router,
        "GET",
        "/api/voip/registrations",
        registrations,
        summary="Who is registered now, and from where",
        tag="voip",
        response=list[RegistrationOut],
    )

    async def calls(request: web.Request, identity: Identity) -> list[LiveCallOut]:
        views = await service.live_calls(ctx.state)
        return [LiveCallOut.model_validate(view, from_attributes=True) for view in views]

    api.add(
        router,
        "GET",
        "/api/voip/calls",
        calls,
        summary="Calls in progress",
        tag="voip",
        response=list[LiveCallOut],
    )

    async def cdr(request: web.Request, identity: Identity, query: MonthQuery) -> list[CdrOut]:
        async with ctx.db.session() as session:
            rows = await cdr_export.cdr_for_month(session, query.month, ctx.settings.zone)
        return [CdrOut.model_validate(row, from_attributes=True) for row in rows]

    api.add(
        router,
        "GET",
        "/api/voip/cdr",
        cdr,
        summary="Call-detail records of a month",
        tag="voip",
        query=MonthQuery,
        response=list[CdrOut],
    )

    async def cdr_csv(request: web.Request, identity: Identity, query: MonthQuery) -> web.Response:
        async with ctx.db.session() as session:
            rows = await cdr_export.cdr_for_month(session, query.month, ctx.settings.zone)
        return web.Response(
            text=cdr_export.cdr_csv(rows),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="cdr-{query.month}.csv"'},
        )

    api.add(
        router,
        "GET",
        "/api/voip/cdr.csv",
        cdr_csv,
        summary="Call-detail records of a month as CSV",
        tag="voip",
        query=MonthQuery,
    )

    console.mount(app)
