"""SIP requests and responses: the data, typed accessors and serialisation."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import SipParseError
from .headers import (
    Headers,
    Params,
    find_unquoted,
    format_params,
    is_token,
    parse_params,
    split_list,
)
from .ids import new_tag
from .uri import NameAddr, Uri, parse_name_addr, parse_port

_T = TypeVar("_T")

SIP_VERSION = "SIP/2.0"
_VIA_HOST = re.compile(r"[A-Za-z0-9.\-_\[\]:]+")

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Methods whose 1xx/2xx responses create a dialog and so carry Record-Route back.
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "Unknown")


@dataclass
class Via:
    """One Via element: ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    protocol: str = SIP_VERSION

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport the server filled in, if any (RFC 3581)."""
        value = self.params.get("rport")
        if value is None:
            return None
        if not value.isdigit() or not value.isascii():
            raise SipParseError(f"bad rport: {value!r}")
        return int(value)

    @property
    def wants_rport(self) -> bool:
        return "rport" in self.params


def parse_via(text: str) -> Via:
    semicolon = find_unquoted(text, ";")
    head = text if semicolon < 0 else text[:semicolon]
    params = parse_params(text[semicolon:].strip()) if semicolon >= 0 else {}
    parts = head.split("/")
    if len(parts) != 3:
        raise SipParseError(f"bad Via: {text!r}")
    name, version = parts[0].strip(), parts[1].strip()
    transport_and_host = parts[2].split(None, 1)
    if len(transport_and_host) != 2 or not is_token(name) or not is_token(version):
        raise SipParseError(f"bad Via: {text!r}")
    transport = transport_and_host[0].upper()
    if not is_token(transport):
        raise SipParseError(f"bad Via transport: {text!r}")
    sent_by = "".join(transport_and_host[1].split())
    if sent_by.startswith("["):
        close = sent_by.find("]")
        if close < 0:
            raise SipParseError(f"bad Via host: {text!r}")
        host, port_text = sent_by[: close + 1], sent_by[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise SipParseError(f"bad Via host: {text!r}")
        port_text = port_text[1:] if port_text else ""
        has_port = bool(port_text) or sent_by.endswith(":")
    else:
        host, colon, port_text = sent_by.partition(":")
        has_port = bool(colon)
    if _VIA_HOST.fullmatch(host) is None:
        raise SipParseError(f"bad Via host: {text!r}")
    port = parse_port(port_text) if has_port else None
    return Via(transport, host, port, params, f"{name.upper()}/{version}")


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii():
        raise SipParseError(f"bad CSeq: {text!r}")
    if len(parts[0]) > 10 or not is_token(parts[1]):
        raise SipParseError(f"bad CSeq: {text!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise SipParseError(f"CSeq out of range: {text!r}")
    return CSeq(number, parts[1])


def _top_via(value: str) -> Via:
    values = split_list(value)
    if not values:
        raise SipParseError("empty Via header")
    return parse_via(values[0])


def _call_id(value: str) -> str:
    value = value.strip()
    if not value or any(ch.isspace() for ch in value):
        raise SipParseError(f"bad Call-ID: {value!r}")
    return value


class _MessageAccessors:
    """Typed views of the headers every SIP layer needs.

    Each is parsed once and remembered while its header keeps the very same value
    (an identity check, so editing a header through ``headers`` is always seen).
    The parsed objects are shared: change a header by writing it, not by mutating them.
    """

    headers: Headers
    body: bytes
    _memo: dict[str, tuple[str, Any]]

    def _parsed(self, key: str, raw: str, parse: Callable[[str], _T]) -> _T:
        hit = self._memo.get(key)
        if hit is not None and hit[0] is raw:
            parsed: _T = hit[1]
            return parsed
        value = parse(raw)
        self._memo[key] = (raw, value)
        return value

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def vias(self) -> list[Via]:
        return [parse_via(value) for value in self.headers.get_list("Via")]

    @property
    def top_via(self) -> Via:
        return self._parsed("Via", self._required("Via"), _top_via)

    @property
    def call_id(self) -> str:
        return self._parsed("Call-ID", self._required("Call-ID"), _call_id)

    @property
    def cseq(self) -> CSeq:
        return self._parsed("CSeq", self._required("CSeq"), parse_cseq)

    @property
    def from_(self) -> NameAddr:
        return self._parsed("From", self._required("From"), parse_name_addr)

    @property
    def to(self) -> NameAddr:
        return self._parsed("To", self._required("To"), parse_name_addr)

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def max_forwards(self) -> int | None:
        return _optional_int(self.headers.get("Max-Forwards"), "Max-Forwards")

    @property
    def expires(self) -> int | None:
        return _optional_int(self.headers.get("Expires"), "Expires")

    @property
    def is_contact_wildcard(self) -> bool:
        return [v.strip() for v in self.headers.get_all("Contact")] == ["*"]

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; empty for the REGISTER wildcard ``Contact: *``."""
        lines = self.headers.get_all("Contact")
        if len(lines) == 1:  # the usual case, remembered (a copy: lists get edited)
            return list(self._parsed("Contact", lines[0], _contact_list))
        if self.is_contact_wildcard:
            return []
        return [parse_name_addr(value) for value in self.headers.get_list("Contact")]

    @property
    def routes(self) -> list[NameAddr]:
        return [parse_name_addr(value) for value in self.headers.get_list("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [parse_name_addr(value) for value in self.headers.get_list("Record-Route")]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    def _serialise(self, start_line: str) -> bytes:
        lines = [start_line]
        length_written = False
        for name, value in self.headers:
            if name == "Content-Length":
                if length_written:
                    continue
                value = str(len(self.body))
                length_written = True
            lines.append(f"{name}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def _validate_common(self) -> None:
        # Parsing is the check: each accessor raises SipParseError when malformed.
        _ = self.top_via, self.from_, self.to, self.call_id, self.max_forwards


def _contact_list(value: str) -> list[NameAddr]:
    if value.strip() == "*":
        return []
    return [parse_name_addr(element) for element in split_list(value)]


def _optional_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        raise SipParseError(f"bad {name}: {value!r}")
    return int(value)


@dataclass
class Request(_MessageAccessors):
    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _memo: dict[str, tuple[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {SIP_VERSION}")

    def validate(self) -> None:
        """Check the headers every request must carry (§8.1.1); raise SipParseError."""
        self._validate_common()
        cseq = self.cseq
        if cseq.method != self.method:
            raise SipParseError(f"CSeq method {cseq.method} does not match {self.method}")

    def response(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
    ) -> Response:
        """A response carrying the headers RFC 3261 §8.2.6 says to copy.

        A to-tag is added to any response but 100 when the request had none;
        pass ``to_tag`` so that all responses of one transaction share it.
        """
        headers = Headers()
        for name, value in self.headers:
            if name in ("Via", "From", "Call-ID", "CSeq"):
                headers.add(name, value)
            elif name == "To":
                if status > 100 and "tag" not in self._parsed("To", value, parse_name_addr).params:
                    value = f"{value};tag={to_tag or new_tag()}"
                headers.add(name, value)
            elif (name == "Timestamp" and status == 100) or (
                name == "Record-Route" and self.method in _DIALOG_CREATING and 100 < status < 300
            ):
                headers.add(name, value)
        return Response(status, reason or reason_phrase(status), headers, body)


@dataclass
class Response(_MessageAccessors):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _memo: dict[str, tuple[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __bytes__(self) -> bytes:
        return self._serialise(f"{SIP_VERSION} {self.status} {self.reason}")

    def validate(self) -> None:
        self._validate_common()
        _ = self.cseq

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    @property
    def is_final(self) -> bool:
        return self.status >= 200


Message = Request | Response
