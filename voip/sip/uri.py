"""SIP and SIPS URIs (RFC 3261 §19.1) and name-addr / addr-spec values (§25.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote as percent_decode

from .errors import SipParseError
from .headers import (
    Params,
    find_unquoted,
    format_params,
    is_token,
    parse_params,
    quote,
    unquote,
)

_HOST = re.compile(r"[A-Za-z0-9.\-_]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# Characters that may appear unescaped in the user and password parts; anything
# else (space, '<', '>', '"', '@', ...) would break re-parsing of the serialised URI.
_USERINFO = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/:]+")
_URI_HEADER = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/?:+$]*")

# Parameters that make two URIs differ when only one of them carries it (§19.1.4).
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


@dataclass(eq=False)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    Parts are kept as written (escapes included) so that serialising is exact;
    comparison follows RFC 3261 §19.1.4.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    scheme: str = "sip"

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def loose_route(self) -> bool:
        return "lr" in self.params

    def _comparison_key(self) -> tuple[object, ...]:
        return (
            self.scheme,
            None if self.user is None else percent_decode(self.user),
            None if self.password is None else percent_decode(self.password),
            self.host.lower(),
            self.port,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        if self._comparison_key() != other._comparison_key():
            return False
        for name in _SIGNIFICANT_PARAMS:
            if _param_norm(self.params, name) != _param_norm(other.params, name):
                return False
        for name, value in self.params.items():
            if name in other.params and not _same_value(value, other.params[name]):
                return False
        return _headers_norm(self.headers) == _headers_norm(other.headers)

    def __hash__(self) -> int:
        return hash(self._comparison_key())


def _param_norm(params: Params, name: str) -> str | None:
    if name not in params:
        return None
    value = params[name]
    return "" if value is None else percent_decode(value).lower()


def _same_value(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return percent_decode(a).lower() == percent_decode(b).lower()


def _headers_norm(headers: dict[str, str]) -> dict[str, str]:
    return {percent_decode(k).lower(): percent_decode(v) for k, v in headers.items()}


@dataclass(frozen=True)
class AbsoluteUri:
    """Any other URI (tel:, urn:, mailto:, ...), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"URI without scheme: {text!r}")
    scheme = text[:colon].lower()
    if _SCHEME.fullmatch(scheme) is None:
        raise SipParseError(f"bad URI scheme: {text!r}")
    rest = text[colon + 1 :]
    if scheme not in ("sip", "sips"):
        if not rest or any(ch <= " " or ch in '<>"' or ch == "\x7f" for ch in rest):
            raise SipParseError(f"bad URI: {text!r}")
        return AbsoluteUri(scheme, rest)
    return _parse_sip_uri(scheme, rest, text)


def parse_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError(f"not a SIP URI: {text!r}", 416)
    return uri


def _parse_sip_uri(scheme: str, rest: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        if _USERINFO.fullmatch(userinfo) is None:
            raise SipParseError(f"bad user part in URI: {text!r}")
        # The user part may itself contain ':' only in a telephone-subscriber's
        # parameters, which come after ';'; the password follows the first ':'
        # that precedes any ';'.
        semicolon = userinfo.find(";")
        head = userinfo if semicolon < 0 else userinfo[:semicolon]
        pw = head.find(":")
        if pw >= 0:
            user, password = userinfo[:pw], userinfo[pw + 1 :]
        else:
            user = userinfo
    headers: dict[str, str] = {}
    question = rest.find("?")
    if question >= 0:
        for item in rest[question + 1 :].split("&"):
            name, equals, value = item.partition("=")
            if not name or not equals:
                raise SipParseError(f"bad URI header in {text!r}")
            if _URI_HEADER.fullmatch(name) is None or _URI_HEADER.fullmatch(value) is None:
                raise SipParseError(f"bad URI header in {text!r}")
            headers[name] = value
        rest = rest[:question]
    params: Params = {}
    semicolon = rest.find(";")
    if semicolon >= 0:
        params = parse_params(rest[semicolon:])
        for param in params.values():
            if param is not None and any(ch in param for ch in ' <>,"'):
                raise SipParseError(f"bad URI parameter in {text!r}")
        rest = rest[:semicolon]
    host, port = _parse_hostport(rest, text)
    return SipUri(host, user, password, port, params, headers, scheme)


def _parse_hostport(text: str, whole: str) -> tuple[str, int | None]:
    port_text: str | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or _IPV6.fullmatch(text, 1, close) is None:
            raise SipParseError(f"bad IPv6 reference in URI: {whole!r}")
        host = text[: close + 1]
        tail = text[close + 1 :]
        if tail:
            if tail[0] != ":":
                raise SipParseError(f"bad host in URI: {whole!r}")
            port_text = tail[1:]
    else:
        host, colon, port_part = text.partition(":")
        if colon:
            port_text = port_part
        if _HOST.fullmatch(host) is None:
            raise SipParseError(f"bad host in URI: {whole!r}")
    port: int | None = None
    if port_text is not None:
        port = parse_port(port_text)
    return host, port


def parse_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5:
        raise SipParseError(f"bad port: {text!r}")
    port = int(text)
    if port > 65535:
        raise SipParseError(f"bad port: {text!r}")
    return port


@dataclass
class NameAddr:
    """A From/To/Contact/Route-style value: optional display name, URI, header params."""

    uri: Uri
    display_name: str | None = None
    params: Params = field(default_factory=dict)

    def __str__(self) -> str:
        display = ""
        if self.display_name is not None:
            display = quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def parse_name_addr(text: str) -> NameAddr:
    text = text.strip()
    display: str | None = None
    if text.startswith('"'):
        end = _closing_quote(text)
        display = unquote(text[: end + 1])
        text = text[end + 1 :].lstrip()
        if not text.startswith("<"):
            raise SipParseError("quoted display name must be followed by <URI>")
    lt = text.find("<") if display is None else 0
    if lt >= 0:
        if display is None:
            name = " ".join(text[:lt].split())
            if name:
                if not all(is_token(word) for word in name.split(" ")):
                    raise SipParseError(f"bad display name: {name!r}")
                display = name
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError(f"unterminated <URI> in {text!r}")
        uri = parse_uri(text[lt + 1 : gt].strip())
        params = parse_params(text[gt + 1 :].strip())
    else:
        semicolon = find_unquoted(text, ";")
        uri_text = text if semicolon < 0 else text[:semicolon]
        if not uri_text or "," in uri_text or "?" in uri_text:
            raise SipParseError(f"bad addr-spec: {text!r}")
        uri = parse_uri(uri_text.strip())
        params = parse_params(text[semicolon:].strip()) if semicolon >= 0 else {}
    for value in params.values():
        if value is not None and not value.startswith('"') and any(ch in value for ch in " ,<>"):
            raise SipParseError(f"bad header parameter in {text!r}")
    return NameAddr(uri, display, params)


def _closing_quote(text: str) -> int:
    index = 1
    while index < len(text):
        ch = text[index]
        if ch == "\\":
            index += 2
            continue
        if ch == '"':
            return index
        index += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")
