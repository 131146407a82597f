"""CSV of contacts (sans-I/O): parse and validate, reporting each bad row by its line.

The header must name ``name,mobile,department,role``; ``language`` and ``groups``
(static group names separated by ``;``) are optional, other columns are ignored.
Excel writes UTF-8 with a byte-order mark, which is accepted.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from sms.phone import InvalidNumber, normalise_mobile

REQUIRED_COLUMNS = ("name", "mobile", "department", "role")
LANGUAGES = ("zh", "en")
MAX_ROWS = 100_000


@dataclass(frozen=True)
class ContactRow:
    line: int
    name: str
    mobile: str
    department: str
    role: str
    language: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ParsedCsv:
    rows: list[ContactRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (encoding, header)."""


def parse_contacts(data: bytes) -> ParsedCsv:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(f"the file is not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFormatError("the file is empty") from None
    except csv.Error as exc:
        raise CsvFormatError(f"line 1: {exc}") from None
    columns = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise CsvFormatError(
            f"line 1: the header lacks {', '.join(missing)} (needs {','.join(REQUIRED_COLUMNS)})"
        )
    index = {name: columns.index(name) for name in columns}
    parsed = ParsedCsv()
    seen: dict[str, int] = {}
    line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append(RowError(reader.line_num, str(exc)))
            break
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue
        if len(parsed.rows) + len(parsed.errors) >= MAX_ROWS:
            parsed.errors.append(RowError(line, f"more than {MAX_ROWS} rows; the rest is ignored"))
            break
        row, error = _row(line, values, index, seen)
        if error is not None:
            parsed.errors.append(error)
        elif row is not None:
            seen[row.mobile] = line
            parsed.rows.append(row)
    return parsed


def _row(
    line: int, values: list[str], index: dict[str, int], seen: dict[str, int]
) -> tuple[ContactRow | None, RowError | None]:
    def get(name: str) -> str:
        position = index.get(name)
        if position is None or position >= len(values):
            return ""
        return values[position].strip()

    name = get("name")
    if not name:
        return None, RowError(line, "name is empty")
    if len(name) > 200:
        return None, RowError(line, "name is longer than 200 characters")
    try:
        mobile = normalise_mobile(get("mobile"))
    except InvalidNumber as exc:
        return None, RowError(line, str(exc))
    if mobile in seen:
        return None, RowError(line, f"{mobile} already appears on line {seen[mobile]}")
    language = get("language").lower() or "zh"
    if language not in LANGUAGES:
        return None, RowError(line, f"language must be zh or en, not {language!r}")
    role = get("role")
    if len(role) > 64:
        return None, RowError(line, "role is longer than 64 characters")
    groups = tuple(part.strip() for part in get("groups").split(";") if part.strip())
    return (
        ContactRow(line, name, mobile, get("department"), role, language, groups),
        None,
    )
