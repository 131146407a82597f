"""Header collection and the small grammars shared by many SIP headers.

Header values are stored as written (one entry per header line) so that a
parsed message serialises back byte for byte; comma-separated lists and
parameters are split on demand, which keeps parsing cheap for the headers a
proxy never looks at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .errors import SipParseError

COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
}

_CANONICAL_NAMES = (
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Replaces",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)

_CANONICAL: dict[str, str] = {name.lower(): name for name in _CANONICAL_NAMES}
_CANONICAL.update(COMPACT_FORMS)

# Headers whose grammar is "#element": several values may share one line,
# separated by commas.  Authentication headers are deliberately absent: their
# commas separate parameters of a single challenge or credential.
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "Path",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    )
)

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]/:&$]+")


# Strings already found to be tokens / parameter names (the same few dozen recur in
# every message); bounded, since they come from the wire.
_TOKENS: set[str] = set()
_PARAM_NAMES: set[str] = set()
_KNOWN_MAX = 4096


def is_token(text: str) -> bool:
    if text in _TOKENS:
        return True
    if _TOKEN.fullmatch(text) is None:
        return False
    if len(_TOKENS) < _KNOWN_MAX:
        _TOKENS.add(text)
    return True


def canonical_name(name: str) -> str:
    """The conventional spelling of a header name; compact forms are expanded."""
    return _CANONICAL.get(name.lower(), name)


# Header names as written -> (lookup key, canonical spelling): every access to a header
# needs both, and a message has a dozen headers read many times on the call path.
# Bounded, since names come from the wire.
_NAMES: dict[str, tuple[str, str]] = {}
_NAMES_MAX = 1024


def _name(name: str) -> tuple[str, str]:
    known = _NAMES.get(name)
    if known is None:
        canonical = canonical_name(name)
        known = (canonical.lower(), canonical)
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[name] = known
    return known


class Headers:
    """Ordered, case-insensitive, multi-valued header collection."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        key, canonical = _name(name)
        self._items.append((key, canonical, value))

    def insert(self, index: int, name: str, value: str) -> None:
        key, canonical = _name(name)
        self._items.insert(index, (key, canonical, value))

    def prepend(self, name: str, value: str) -> None:
        """Add a header in front of the existing ones of the same name (Via, Record-Route)."""
        key = _name(name)[0]
        for index, item in enumerate(self._items):
            if item[0] == key:
                self.insert(index, name, value)
                return
        self.add(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _name(name)[0]
        for item in self._items:
            if item[0] == key:
                return item[2]
        return default

    def get_all(self, name: str) -> list[str]:
        """Every header line's value, unsplit."""
        key = _name(name)[0]
        return [item[2] for item in self._items if item[0] == key]

    def get_list(self, name: str) -> list[str]:
        """Every element of a list header, split at the commas that separate elements."""
        values: list[str] = []
        for value in self.get_all(name):
            values.extend(split_list(value))
        return values

    def set(self, name: str, value: str) -> None:
        """Replace the first header of this name, drop the rest; append if absent."""
        key, canonical = _name(name)
        kept: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] != key:
                kept.append(item)
            elif not placed:
                kept.append((key, canonical, value))
                placed = True
        if not placed:
            kept.append((key, canonical, value))
        self._items = kept

    def remove(self, name: str) -> None:
        key = _name(name)[0]
        self._items = [item for item in self._items if item[0] != key]

    def remove_first(self, name: str) -> str | None:
        """Remove the first element of a (list) header, e.g. the top Via; return it."""
        key = _name(name)[0]
        for index, item in enumerate(self._items):
            if item[0] == key:
                elements = split_list(item[2]) if key in LIST_HEADERS else [item[2]]
                if len(elements) > 1:
                    rest = ", ".join(elements[1:])
                    self._items[index] = (key, item[1], rest)
                else:
                    del self._items[index]
                return elements[0] if elements else None
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _name(name)[0]
        return any(item[0] == key for item in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        return clone

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


def split_list(value: str) -> list[str]:
    """Split a list header at top-level commas (not inside quotes or <...>)."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    index = 0
    length = len(value)
    while index < length:
        ch = value[index]
        if in_quotes:
            if ch == "\\":
                index += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            part = value[start:index].strip()
            if part:
                parts.append(part)
            start = index + 1
        index += 1
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def unquote(text: str) -> str:
    """Value of a quoted-string (with its quotes), undoing backslash escapes."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise SipParseError(f"not a quoted string: {text!r}")
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    index = 0
    while index < len(inner):
        ch = inner[index]
        if ch == "\\":
            index += 1
            if index == len(inner):
                raise SipParseError("dangling escape in quoted string")
            ch = inner[index]
        out.append(ch)
        index += 1
    return "".join(out)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_unquoted(text: str, target: str, start: int = 0) -> int:
    """Index of the first ``target`` character outside quoted strings, or -1."""
    if '"' not in text:
        return text.find(target, start)
    in_quotes = False
    index = start
    length = len(text)
    while index < length:
        ch = text[index]
        if in_quotes:
            if ch == "\\":
                index += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == target:
            return index
        index += 1
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {text!r}")
    return -1


Params = dict[str, str | None]


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` parameters; names are lowercased, values kept as written.

    A quoted value keeps its quotes so that serialising it gives the same text;
    use :func:`param_value` for the unquoted value.
    """
    params: Params = {}
    if not text:
        return params
    if text[0] != ";":
        raise SipParseError(f"parameters must start with ';': {text!r}")
    position = 1
    length = len(text)
    while position <= length:
        end = find_unquoted(text, ";", position)
        if end < 0:
            end = length
        part = text[position:end]
        equals = part.find("=")
        if equals < 0:
            name, value = part.strip(), None
        else:
            name, value = part[:equals].strip(), part[equals + 1 :].strip()
            if value.startswith('"'):
                unquote(value)
            elif not value:
                raise SipParseError(f"empty parameter value in {text!r}")
        if not is_param_name(name):
            raise SipParseError(f"bad parameter name in {text!r}")
        params[name.lower()] = value
        position = end + 1
    return params


def is_param_name(text: str) -> bool:
    if text in _PARAM_NAMES:
        return True
    if _PARAM_NAME.fullmatch(text) is None:
        return False
    if len(_PARAM_NAMES) < _KNOWN_MAX:
        _PARAM_NAMES.add(text)
    return True


def param_value(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is not None and value.startswith('"'):
        return unquote(value)
    return value


def format_params(params: Params) -> str:
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in params.items()
    )
