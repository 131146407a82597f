"""Extensions from a CSV file: every row checked, good rows imported in one transaction.

The file's header is ``number,name,department,password[,class_of_service]`` (any
order, any case), UTF-8 with or without a byte-order mark, as spreadsheets save
it. Each bad row is reported by its line in the file, with the field and the
reason; a bad row is never half-written, and the good rows are added together.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import audit
from core.context import AppContext
from voip.models import ClassOfService, Extension
from voip.service import (
    DirectoryError,
    check_name,
    check_number,
    check_password,
    department_ids,
    new_extension,
    parse_class_of_service,
)

MAX_CSV_BYTES = 1024 * 1024
MAX_CSV_ROWS = 10_000
REQUIRED_COLUMNS = ("number", "name", "department", "password")
OPTIONAL_COLUMNS = ("class_of_service",)
HEADER_LINE = 1


@dataclass(frozen=True)
class RowError:
    """Why one field of one line was refused."""

    line: int
    field: str
    code: str
    reason: str
    # dataclasses.field: the ``field`` attribute above shadows the name in this class body.
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    number: str = ""

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0

    @property
    def failed_lines(self) -> list[int]:
        return sorted({error.line for error in self.errors})

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _GoodRow:
    line: int
    number: str
    name: str
    password: str
    department_id: int | None
    class_of_service: ClassOfService


def _error(line: int, exc: DirectoryError, number: str = "") -> RowError:
    return RowError(line, exc.field, exc.code, exc.reason, dict(exc.params), number)


def _file_error(line: int, field_name: str, code: str, **params: Any) -> RowError:
    return _error(line, DirectoryError(field_name, code, **params))


def _decode(data: bytes) -> str | RowError:
    """The file as text, or the refusal naming the line of the first bad byte."""
    if len(data) > MAX_CSV_BYTES:
        return _file_error(0, "file", "file_too_large", limit=MAX_CSV_BYTES)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _file_error(data[: exc.start].count(b"\n") + 1, "file", "file_encoding")


async def import_extensions(session: AsyncSession, data: bytes, *, realm: str) -> ImportReport:
    """Check every row of ``data``, then add the good ones in the caller's transaction."""
    report = ImportReport()
    text = _decode(data)
    if isinstance(text, RowError):
        report.errors.append(text)
        return report

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        report.errors.append(_file_error(0, "file", "file_empty"))
        return report
    except csv.Error as exc:
        report.errors.append(_file_error(HEADER_LINE, "file", "header_columns", got=str(exc)))
        return report
    columns = [name.strip().lower() for name in header]
    allowed = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    if (
        not set(REQUIRED_COLUMNS) <= set(columns)
        or not set(columns) <= allowed
        or len(set(columns)) != len(columns)
    ):
        report.errors.append(
            _file_error(HEADER_LINE, "file", "header_columns", got=",".join(header))
        )
        return report

    departments = await department_ids(session)
    existing = set(await session.scalars(select(Extension.number)))
    first_line_of: dict[str, int] = {}
    good: list[_GoodRow] = []
    next_line = HEADER_LINE + 1
    while True:
        line = next_line
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.errors.append(_file_error(line, "row", "row_unreadable", detail=str(exc)))
            break
        next_line = reader.line_num + 1
        if not any(value.strip() for value in values):
            continue  # blank lines, and the empty rows spreadsheets leave at the end
        report.rows += 1
        if report.rows > MAX_CSV_ROWS:
            report.errors.append(
                _file_error(line, "file", "file_too_many_rows", limit=MAX_CSV_ROWS)
            )
            good.clear()
            break
        if len(values) != len(columns):
            report.errors.append(
                _file_error(line, "row", "row_fields", got=len(values), expected=len(columns))
            )
            continue
        row = dict(zip(columns, values, strict=True))
        checked = _check_row(line, row, departments, existing, first_line_of)
        if isinstance(checked, _GoodRow):
            good.append(checked)
        else:
            report.errors.extend(checked)

    if report.rows == 0 and not report.errors:
        report.errors.append(_file_error(HEADER_LINE, "file", "file_no_rows"))
    if good:
        await _insert(session, good, realm, report)
    return report


def _check_row(
    line: int,
    row: dict[str, str],
    departments: dict[str, int],
    existing: set[str],
    first_line_of: dict[str, int],
) -> _GoodRow | list[RowError]:
    """Every refusal of one row (not only the first), or the row ready to insert."""
    number = row["number"].strip()
    errors: list[RowError] = []

    def attempt(check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except DirectoryError as exc:
            errors.append(_error(line, exc, number))
            return None

    try:
        check_number(number)
    except DirectoryError as exc:
        errors.append(_error(line, exc, number))
    else:
        if number in first_line_of:
            errors.append(
                _error(
                    line,
                    DirectoryError(
                        "number", "number_repeated", number=number, line=first_line_of[number]
                    ),
                    number,
                )
            )
        else:
            first_line_of[number] = line
            if number in existing:
                errors.append(
                    _error(line, DirectoryError("number", "number_exists", number=number), number)
                )
    name = attempt(check_name, row["name"])
    attempt(check_password, row["password"])
    department_code = row["department"].strip()
    department_id = departments.get(department_code) if department_code else None
    if department_code and department_id is None:
        errors.append(
            _error(
                line,
                DirectoryError("department", "department_unknown", code=department_code),
                number,
            )
        )
    cos_text = row.get("class_of_service", "").strip()
    class_of_service = (
        attempt(parse_class_of_service, cos_text) if cos_text else ClassOfService.INTERNAL
    )
    if errors:
        return errors
    return _GoodRow(line, number, name, row["password"], department_id, class_of_service)


async def _insert(
    session: AsyncSession, good: list[_GoodRow], realm: str, report: ImportReport
) -> None:
    # A number added by another writer since the check makes the flush fail, and the
    # caller's transaction then rolls back whole: no row of the file is added.
    session.add_all(
        new_extension(
            number=row.number,
            name=row.name,
            password=row.password,
            realm=realm,
            department_id=row.department_id,
            class_of_service=row.class_of_service,
        )
        for row in good
    )
    await session.flush()
    report.imported.extend(row.number for row in good)


async def import_and_audit(
    ctx: AppContext, data: bytes, actor: str, source: str = ""
) -> ImportReport:
    """Import in one transaction, with one audit row per added extension and a summary."""
    try:
        async with ctx.db.session() as session:
            report = await import_extensions(session, data, realm=ctx.settings.sip_realm)
            for number in report.imported:
                await audit(session, actor, "voip.extension.add", number, source, via="import")
            await audit(
                session,
                actor,
                "voip.extension.import",
                "",
                source,
                imported=len(report.imported),
                failed_lines=report.failed_lines,
            )
    except IntegrityError:
        return ImportReport(errors=[_file_error(0, "file", "directory_changed")])
    return report
