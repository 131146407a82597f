"""The extension directory and what the exchange is doing now (no HTTP here).

Directory changes raise :class:`DirectoryError`, which names the field, carries a
stable ``code`` (the console translates it) and reads in English for the API and
the command line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.models import Department
from core.state import SharedState
from voip.models import Binding, ClassOfService, Extension

log = structlog.get_logger("voip.directory")

NUMBER_PATTERN = re.compile(r"^[0-9]{2,8}$")
MIN_SIP_PASSWORD = 8
MAX_SIP_PASSWORD = 128
MAX_NAME = 200

# The SIP server keeps live calls here (field = call id, value = a JSON record).
LIVE_CALLS_KEY = "voip:calls"

# English text of every refusal; the console's catalog has these as voip.error.<code>.
ERROR_TEXT: Final[dict[str, str]] = {
    "number_format": "must be 2 to 8 digits",
    "number_exists": "extension {number} already exists",
    "number_unknown": "no extension {number}",
    "number_repeated": "number {number} already appears on line {line}",
    "name_empty": "must not be empty",
    "name_too_long": f"must have at most {MAX_NAME} characters",
    "password_short": f"must have at least {MIN_SIP_PASSWORD} characters",
    "password_too_long": f"must have at most {MAX_SIP_PASSWORD} characters",
    "department_unknown": "no department with code {code!r}",
    "cos_unknown": "must be one of " + ", ".join(c.value for c in ClassOfService),
    "file_encoding": "the file is not UTF-8 text",
    "file_too_large": "the file is larger than {limit} bytes",
    "file_empty": "the file has no header line",
    "file_no_rows": "the file has a header but no rows",
    "file_too_many_rows": "the file has more than {limit} rows",
    "header_columns": "the header must be number,name,department,password[,class_of_service]; "
    "got {got}",
    "row_fields": "the row has {got} fields, the header has {expected}",
    "row_unreadable": "the line cannot be read as CSV: {detail}",
    "directory_changed": "the directory changed while importing; nothing was imported, try again",
}


class DirectoryError(ValueError):
    """A directory change that was refused: ``field`` says what to fix, ``code`` why."""

    def __init__(self, field: str, code: str, /, **params: Any) -> None:
        self.field = field
        self.code = code
        self.params = params
        self.reason = ERROR_TEXT[code].format(**params)
        super().__init__(f"{field}: {self.reason}")


@dataclass(frozen=True)
class ExtensionView:
    number: str
    name: str
    department: str | None
    class_of_service: ClassOfService
    enabled: bool


class Keep:
    """Marks an edit field as unchanged (``None`` is a value: no department)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()


@dataclass(frozen=True)
class ExtensionEdit:
    """What to change on an extension; fields left as ``KEEP`` stay as they are."""

    name: str | Keep = KEEP
    department_code: str | Keep | None = KEEP
    class_of_service: ClassOfService | Keep = KEEP
    enabled: bool | Keep = KEEP
    password: str | Keep = KEEP


@dataclass(frozen=True)
class RegistrationView:
    """One registered contact of an extension: who, where from, until when."""

    number: str
    name: str
    contact: str
    source: str
    transport: str
    user_agent: str
    node: str
    registered_at: dt.datetime
    expires_at: dt.datetime
    expires_in_seconds: int


@dataclass(frozen=True)
class LiveCall:
    call_id: str
    caller: str
    callee: str
    state: str
    started_at: dt.datetime | None
    answered_at: dt.datetime | None
    node: str


def as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands timestamps back without a zone; everything is stored in UTC.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def shown(moment: dt.datetime | None, zone: dt.tzinfo) -> str:
    """A stored instant as people read it: in ``zone`` (the city's), ISO 8601 to the second
    with its offset (``2026-11-01 00:30:00+08:00``); "" for none."""
    if moment is None:
        return ""
    return as_utc(moment).astimezone(zone).isoformat(sep=" ", timespec="seconds")


def digest_ha1(number: str, realm: str, password: str) -> tuple[str, str]:
    """HA1 for MD5 and SHA-256 digest (RFC 2617 / RFC 8760): what the registrar checks."""
    material = f"{number}:{realm}:{password}".encode()
    return hashlib.md5(material).hexdigest(), hashlib.sha256(material).hexdigest()


def check_number(number: str) -> None:
    if not NUMBER_PATTERN.match(number):
        raise DirectoryError("number", "number_format")


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise DirectoryError("name", "name_empty")
    if len(cleaned) > MAX_NAME:
        raise DirectoryError("name", "name_too_long")
    return cleaned


def check_password(password: str) -> None:
    if len(password) < MIN_SIP_PASSWORD:
        raise DirectoryError("password", "password_short")
    if len(password) > MAX_SIP_PASSWORD:
        raise DirectoryError("password", "password_too_long")


def parse_class_of_service(value: str) -> ClassOfService:
    try:
        return ClassOfService(value.strip().lower())
    except ValueError:
        raise DirectoryError("class_of_service", "cos_unknown") from None


async def department_by_code(session: AsyncSession, code: str) -> Department:
    department = await session.scalar(select(Department).where(Department.code == code))
    if department is None:
        raise DirectoryError("department", "department_unknown", code=code)
    return department


async def department_ids(session: AsyncSession) -> dict[str, int]:
    """Every department's id by code: one query for a whole CSV file."""
    rows = await session.execute(select(Department.code, Department.id))
    return {code: department_id for code, department_id in rows}


async def add_extension(
    session: AsyncSession,
    *,
    number: str,
    name: str,
    password: str,
    realm: str,
    department_code: str | None = None,
    class_of_service: ClassOfService = ClassOfService.INTERNAL,
) -> Extension:
    check_number(number)
    cleaned_name = check_name(name)
    check_password(password)
    if await _find(session, number) is not None:
        raise DirectoryError("number", "number_exists", number=number)
    department_id = None
    if department_code:
        department_id = (await department_by_code(session, department_code)).id
    extension = new_extension(
        number=number,
        name=cleaned_name,
        password=password,
        realm=realm,
        department_id=department_id,
        class_of_service=class_of_service,
    )
    session.add(extension)
    await session.flush()
    return extension


def new_extension(
    *,
    number: str,
    name: str,
    password: str,
    realm: str,
    department_id: int | None,
    class_of_service: ClassOfService,
) -> Extension:
    """An extension row from already validated values; the password is kept only as HA1."""
    ha1_md5, ha1_sha256 = digest_ha1(number, realm, password)
    return Extension(
        number=number,
        name=name,
        department_id=department_id,
        realm=realm,
        ha1_md5=ha1_md5,
        ha1_sha256=ha1_sha256,
        class_of_service=class_of_service,
        enabled=True,
    )


async def list_extensions(session: AsyncSession) -> list[ExtensionView]:
    rows = await session.execute(
        select(Extension, Department.code)
        .outerjoin(Department, Department.id == Extension.department_id)
        .order_by(Extension.number)
    )
    return [_view(ext, code) for ext, code in rows]


async def get_extension(session: AsyncSession, number: str) -> ExtensionView:
    row = (
        await session.execute(
            select(Extension, Department.code)
            .outerjoin(Department, Department.id == Extension.department_id)
            .where(Extension.number == number)
        )
    ).first()
    if row is None:
        raise DirectoryError("number", "number_unknown", number=number)
    return _view(row[0], row[1])


async def edit_extension(
    session: AsyncSession, number: str, edit: ExtensionEdit, *, realm: str
) -> tuple[ExtensionView, list[str]]:
    """Apply ``edit``; returns the extension as it now is and the names of changed fields.

    Every field is checked before anything is changed, so a refused edit changes nothing.
    """
    extension = await _find(session, number)
    if extension is None:
        raise DirectoryError("number", "number_unknown", number=number)
    changes: dict[str, Any] = {}
    if not isinstance(edit.name, Keep):
        changes["name"] = check_name(edit.name)
    if not isinstance(edit.department_code, Keep):
        code = edit.department_code or None
        changes["department_id"] = (
            (await department_by_code(session, code)).id if code is not None else None
        )
    if not isinstance(edit.class_of_service, Keep):
        changes["class_of_service"] = edit.class_of_service
    if not isinstance(edit.enabled, Keep):
        changes["enabled"] = edit.enabled
    if not isinstance(edit.password, Keep):
        check_password(edit.password)
        # A new password replaces both HA1 values, for the current realm.
        ha1_md5, ha1_sha256 = digest_ha1(number, realm, edit.password)
        changes.update(realm=realm, ha1_md5=ha1_md5, ha1_sha256=ha1_sha256)
    changed: list[str] = []
    for attribute, value in changes.items():
        if getattr(extension, attribute) != value:
            setattr(extension, attribute, value)
            changed.append(_FIELD_OF_ATTRIBUTE.get(attribute, attribute))
    await session.flush()
    return await get_extension(session, number), sorted(set(changed))


_FIELD_OF_ATTRIBUTE = {
    "department_id": "department",
    "realm": "password",
    "ha1_md5": "password",
    "ha1_sha256": "password",
}


async def remove_extension(session: AsyncSession, number: str) -> None:
    extension = await _find(session, number)
    if extension is None:
        raise DirectoryError("number", "number_unknown", number=number)
    await session.delete(extension)


async def list_registrations(
    session: AsyncSession, now: dt.datetime | None = None
) -> list[RegistrationView]:
    """Who is registered now, from where: the unexpired bindings (the source of truth)."""
    moment = now or utcnow()
    rows = await session.execute(
        select(Binding, Extension.number, Extension.name)
        .join(Extension, Extension.id == Binding.extension_id)
        .where(Binding.expires_at > moment)
        .order_by(Extension.number, Binding.registered_at)
    )
    views = []
    for binding, number, name in rows:
        expires_at = as_utc(binding.expires_at)
        views.append(
            RegistrationView(
                number=number,
                name=name,
                contact=binding.contact_uri,
                source=binding.source,
                transport=binding.transport,
                user_agent=binding.user_agent,
                node=binding.node,
                registered_at=as_utc(binding.registered_at),
                expires_at=expires_at,
                expires_in_seconds=max(0, int((expires_at - moment).total_seconds())),
            )
        )
    return views


async def live_calls(state: SharedState) -> list[LiveCall]:
    """Calls in progress on every node, oldest first, as the SIP server published them."""
    calls = []
    for call_id, raw in (await state.hgetall(LIVE_CALLS_KEY)).items():
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            calls.append(
                LiveCall(
                    call_id=str(record.get("call_id") or call_id),
                    caller=str(record.get("caller", "")),
                    callee=str(record.get("callee", "")),
                    state=str(record.get("state", "")),
                    started_at=_parse_time(record.get("started_at")),
                    answered_at=_parse_time(record.get("answered_at")),
                    node=str(record.get("node", "")),
                )
            )
        except ValueError as exc:
            # One bad entry must not hide the other calls from the operator.
            log.warning("voip.live_call.unreadable", call_id=call_id, error=str(exc))
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(calls, key=lambda call: (call.started_at or oldest, call.call_id))


def _parse_time(value: object) -> dt.datetime | None:
    if not value:
        return None
    return as_utc(dt.datetime.fromisoformat(str(value)))


async def _find(session: AsyncSession, number: str) -> Extension | None:
    return await session.scalar(select(Extension).where(Extension.number == number))


def _view(extension: Extension, department_code: str | None) -> ExtensionView:
    return ExtensionView(
        extension.number,
        extension.name,
        department_code,
        extension.class_of_service,
        extension.enabled,
    )
