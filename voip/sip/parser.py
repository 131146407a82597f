"""Turning bytes into SIP messages: whole datagrams, or a byte stream (TCP/TLS).

Any input either parses or raises :class:`SipParseError`; nothing else escapes,
because these functions sit directly behind the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SipParseError
from .headers import Headers, is_token
from .message import SIP_VERSION, Request, Response
from .uri import parse_uri

# Control characters are never legal in a header section once line ends are
# removed; rejecting them keeps serialisation from producing a different message.
_BAD_HEAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
_CONTINUATION = (" ", "\t")


@dataclass(frozen=True)
class KeepAlivePing:
    """A double CRLF on a stream (RFC 5626 §3.5.1); answer with a single CRLF."""


@dataclass(frozen=True)
class KeepAlivePong:
    """A single CRLF on a stream: the answer to our own ping."""


@dataclass(frozen=True)
class InvalidMessage:
    """A correctly framed message whose mandatory headers are malformed.

    The stream stays usable; a request deserves a 400 if it can be answered.
    """

    message: Request | Response
    error: SipParseError


StreamEvent = Request | Response | KeepAlivePing | KeepAlivePong | InvalidMessage


def _find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """(end of the header section, start of the body), or (-1, -1) if incomplete."""
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 1, crlf + 3
    if lf >= 0:
        return lf + 1, lf + 2
    return -1, -1


def _parse_head(head: bytes | bytearray) -> Request | Response:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("message head is not UTF-8") from exc
    if _BAD_HEAD_CHARS.search(text):
        raise SipParseError("control character in message head")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise SipParseError("empty message")
    message = _parse_start_line(lines[0])
    headers = message.headers
    name = ""
    value = ""
    for line in lines[1:]:
        if line.startswith(_CONTINUATION):
            if not name:
                raise SipParseError("continuation line before any header")
            value = f"{value} {line.strip()}" if value else line.strip()
            continue
        if name:
            headers.add(name, value)
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipParseError(f"bad header line: {line[:60]!r}")
        value = value.strip(" \t")
    if name:
        headers.add(name, value)
    return message


def _check_version(version: str) -> None:
    if version != SIP_VERSION:
        if version.upper() == SIP_VERSION:
            return
        raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line: {line[:60]!r}")
        _check_version(parts[0])
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
            raise SipParseError(f"bad status code: {line[:60]!r}")
        reason = parts[2] if len(parts) == 3 else ""
        return Response(int(code), reason, Headers())
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line: {line[:60]!r}")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method: {method[:20]!r}")
    _check_version(version)
    return Request(method, parse_uri(uri_text), Headers())


def _content_length(message: Request | Response) -> int | None:
    values = message.headers.get_all("Content-Length")
    if not values:
        return None
    texts = {value.strip() for value in values}
    if len(texts) != 1:
        raise SipParseError("conflicting Content-Length headers")
    text = texts.pop()
    if not text.isdigit() or not text.isascii() or len(text) > 10:
        raise SipParseError(f"bad Content-Length: {text[:20]!r}")
    return int(text)


def parse_message(data: bytes, *, validate: bool = True) -> Request | Response:
    """Parse one datagram.  Content-Length is optional; a body beyond it is dropped.

    With ``validate`` the mandatory headers (Via, From, To, Call-ID, CSeq) are
    checked, so later accessors on them cannot fail.
    """
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    head_end, body_start = _find_head_end(data, start)
    if head_end < 0:
        raise SipParseError("no empty line after the headers")
    message = _parse_head(data[start:head_end])
    length = _content_length(message)
    if length is None:
        message.body = data[body_start:]
    elif body_start + length > len(data):
        raise SipParseError("Content-Length larger than the datagram")
    else:
        message.body = data[body_start : body_start + length]
    if validate:
        message.validate()
    return message


class StreamParser:
    """Incremental parser for stream transports, which require Content-Length.

    After it raises, the stream cannot be resynchronised: close the connection.
    Messages framed correctly but failing validation come out as InvalidMessage.
    """

    def __init__(self, max_message_size: int = 65536, *, validate: bool = True) -> None:
        self.max_message_size = max_message_size
        self._validate = validate
        self._buffer = bytearray()
        self._search_from = 0
        self._pending: Request | Response | None = None
        self._needed = 0

    def feed(self, data: bytes) -> list[StreamEvent]:
        self._buffer += data
        events: list[StreamEvent] = []
        while True:
            if self._pending is None:
                if not self._skip_keepalives(events) or not self._read_head():
                    break
            message = self._pending
            assert message is not None
            if len(self._buffer) < self._needed:
                break
            message.body = bytes(self._buffer[: self._needed])
            del self._buffer[: self._needed]
            self._pending = None
            try:
                if self._validate:
                    message.validate()
            except SipParseError as error:
                events.append(InvalidMessage(message, error))
            else:
                events.append(message)
        return events

    def _skip_keepalives(self, events: list[StreamEvent]) -> bool:
        """Consume CRLF keep-alives; True when a message start line may follow."""
        buffer = self._buffer
        while buffer.startswith((b"\r", b"\n")):
            if buffer.startswith(b"\r\n\r\n"):
                del buffer[:4]
                events.append(KeepAlivePing())
            elif buffer.startswith(b"\r\n") and len(buffer) > 2 and buffer[2:3] != b"\r":
                del buffer[:2]
                events.append(KeepAlivePong())
            elif buffer == b"\r\n":
                # Pings arrive in one write, so a lone CRLF at the end of what was
                # read is the peer's pong rather than the first half of a ping.
                del buffer[:2]
                events.append(KeepAlivePong())
            elif buffer.startswith(b"\n"):
                del buffer[:1]
            elif len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer)):
                return False
            else:
                raise SipParseError("stray carriage return between messages")
        return bool(buffer)

    def _read_head(self) -> bool:
        buffer = self._buffer
        head_end, body_start = _find_head_end(buffer, self._search_from)
        if head_end < 0:
            if len(buffer) > self.max_message_size:
                raise SipParseError("message header section too large", 413)
            self._search_from = max(0, len(buffer) - 2)
            return False
        self._search_from = 0
        message = _parse_head(buffer[:head_end])
        length = _content_length(message)
        if length is None:
            raise SipParseError("Content-Length is required on stream transports")
        if body_start + length > self.max_message_size:
            raise SipParseError("message too large", 413)
        del buffer[:body_start]
        self._pending = message
        self._needed = length
        return True


def parse_head(data: bytes) -> Request | Response:
    """The start line and headers alone, without framing or validation.

    For answering input that failed :func:`parse_message` (a 400 or 413 needs the
    request's Via, From, To, Call-ID and CSeq); a head cut short is parsed as far
    as it goes. Raises :class:`SipParseError` when even that is impossible.
    """
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    head_end, _ = _find_head_end(data, start)
    if head_end < 0:
        head_end = data.rfind(b"\n", start) + 1 or len(data)
    return _parse_head(data[start:head_end])
