"""Session descriptions (RFC 4566) and the offer/answer details SIP needs (RFC 3264).

Fields are kept as written so that a well-formed description serialises back
exactly; typed helpers read rtpmap/fmtp, directions and hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SdpParseError

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_HOLD_DIRECTIONS = ("sendonly", "inactive")


@dataclass
class Origin:
    username: str
    session_id: str
    session_version: str
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass
class Connection:
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def is_null(self) -> bool:
        """The RFC 2543 way of putting a stream on hold: c=IN IP4 0.0.0.0."""
        return self.address.split("/", 1)[0] in ("0.0.0.0", "::")


@dataclass
class Timing:
    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass
class Attribute:
    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        channels = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{channels}"


class _Attributes:
    attributes: list[Attribute]

    def get_attribute(self, name: str) -> str | None:
        """Value of the first attribute of that name ('' for a flag); None if absent."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.value if attribute.value is not None else ""
        return None

    def get_attributes(self, name: str) -> list[str]:
        return [a.value or "" for a in self.attributes if a.name == name]

    @property
    def direction(self) -> str | None:
        """The direction attribute given at this level, if any."""
        for attribute in self.attributes:
            if attribute.name in DIRECTIONS and attribute.value is None:
                return attribute.name
        return None

    def set_direction(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"not an SDP direction: {direction!r}")
        kept = [a for a in self.attributes if not (a.name in DIRECTIONS and a.value is None)]
        self.attributes = [*kept, Attribute(direction)]


@dataclass
class Media(_Attributes):
    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    information: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    def rtpmaps(self) -> dict[int, RtpMap]:
        maps: dict[int, RtpMap] = {}
        for value in self.get_attributes("rtpmap"):
            rtpmap = parse_rtpmap(value)
            maps[rtpmap.payload_type] = rtpmap
        return maps

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for value in self.get_attributes("fmtp"):
            if value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    def _lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={' '.join([self.media, port, self.proto, *self.formats])}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        lines.extend(f"c={c}" for c in self.connections)
        lines.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines.extend(f"a={a}" for a in self.attributes)
        return lines


def _is_number(text: str) -> bool:
    return text.isdigit() and text.isascii()


def parse_rtpmap(value: str) -> RtpMap:
    payload, _, encoding_part = value.strip().partition(" ")
    parts = encoding_part.strip().split("/")
    if not _is_number(payload) or len(parts) not in (2, 3) or not all(map(_is_number, parts[1:])):
        raise SdpParseError(f"bad rtpmap: {value!r}")
    channels = int(parts[2]) if len(parts) == 3 else None
    return RtpMap(int(payload), parts[0], int(parts[1]), channels)


@dataclass
class SessionDescription(_Attributes):
    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    times: list[Timing] = field(default_factory=lambda: [Timing()])
    zone: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def __str__(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        for letter, value in (("i", self.information), ("u", self.uri)):
            if value is not None:
                lines.append(f"{letter}={value}")
        lines.extend(f"e={e}" for e in self.emails)
        lines.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={b}" for b in self.bandwidths)
        for timing in self.times:
            lines.append(f"t={timing.start} {timing.stop}")
            lines.extend(f"r={r}" for r in timing.repeats)
        if self.zone is not None:
            lines.append(f"z={self.zone}")
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines.extend(f"a={a}" for a in self.attributes)
        for media in self.media:
            lines.extend(media._lines())
        return "\r\n".join(lines) + "\r\n"

    def direction_of(self, media: Media) -> str:
        return media.direction or self.direction or "sendrecv"

    def connection_of(self, media: Media) -> Connection | None:
        return media.connections[0] if media.connections else self.connection

    def is_media_on_hold(self, media: Media) -> bool:
        connection = self.connection_of(media)
        held_address = connection is not None and connection.is_null
        return held_address or self.direction_of(media) in _HOLD_DIRECTIONS

    @property
    def is_on_hold(self) -> bool:
        """Every active (non-zero port) stream is held; False with no active stream."""
        active = [m for m in self.media if m.port != 0]
        return bool(active) and all(self.is_media_on_hold(m) for m in active)


_SESSION_ORDER = "vosiuepcbtrzkam"


def parse_sdp(data: bytes | str) -> SessionDescription:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpParseError("SDP is not UTF-8") from exc
    lines = data.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 3:
        raise SdpParseError("SDP needs at least v=, o= and s= lines")
    session: SessionDescription | None = None
    version: int | None = None
    current: Media | None = None
    last_order = -1
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise SdpParseError(f"bad SDP line: {line[:40]!r}")
        letter, value = line[0], line[2:]
        if current is not None and letter != "m":
            _parse_media_line(current, letter, value)
            continue
        order = _SESSION_ORDER.find(letter)
        # Each t= may be followed by its r= lines, so t= may come after r=.
        if letter == "t" and last_order == _SESSION_ORDER.find("r"):
            order = last_order
        if order < 0 or order < last_order:
            raise SdpParseError(f"unexpected SDP line: {line[:40]!r}")
        last_order = order
        if letter == "v":
            if version is not None or value != "0":
                raise SdpParseError(f"bad SDP version: {value!r}")
            version = 0
        elif letter == "o":
            session = SessionDescription(_parse_origin(value), times=[])
        elif session is None:
            raise SdpParseError("SDP must start with v= and o=")
        elif letter == "m":
            current = _parse_m_line(value)
            session.media.append(current)
        else:
            _parse_session_line(session, letter, value)
    if session is None or version is None:
        raise SdpParseError("SDP without v= or o=")
    if not session.times:
        raise SdpParseError("SDP without t=")
    return session


def _parse_session_line(session: SessionDescription, letter: str, value: str) -> None:
    if letter == "s":
        session.session_name = value
    elif letter == "i":
        session.information = value
    elif letter == "u":
        session.uri = value
    elif letter == "e":
        session.emails.append(value)
    elif letter == "p":
        session.phones.append(value)
    elif letter == "c":
        session.connection = _parse_connection(value)
    elif letter == "b":
        session.bandwidths.append(_checked_bandwidth(value))
    elif letter == "t":
        parts = value.split(" ")
        if len(parts) != 2 or not all(map(_is_number, parts)):
            raise SdpParseError(f"bad t= line: {value!r}")
        session.times.append(Timing(int(parts[0]), int(parts[1])))
    elif letter == "r":
        if not session.times:
            raise SdpParseError("r= line without t= line")
        session.times[-1].repeats.append(value)
    elif letter == "z":
        session.zone = value
    elif letter == "k":
        session.key = value
    else:
        session.attributes.append(_parse_attribute(value))


def _parse_media_line(media: Media, letter: str, value: str) -> None:
    if letter == "i":
        media.information = value
    elif letter == "c":
        media.connections.append(_parse_connection(value))
    elif letter == "b":
        media.bandwidths.append(_checked_bandwidth(value))
    elif letter == "k":
        media.key = value
    elif letter == "a":
        media.attributes.append(_parse_attribute(value))
    else:
        raise SdpParseError(f"unexpected {letter}= line in a media section")


def _parse_origin(value: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SdpParseError(f"bad o= line: {value!r}")
    username, session_id, session_version, nettype, addrtype, address = parts
    return Origin(username, session_id, session_version, address, nettype, addrtype)


def _parse_connection(value: str) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SdpParseError(f"bad c= line: {value!r}")
    return Connection(parts[2], parts[0], parts[1])


def _checked_bandwidth(value: str) -> str:
    kind, colon, amount = value.partition(":")
    if not kind or not colon or not _is_number(amount):
        raise SdpParseError(f"bad b= line: {value!r}")
    return value


def _parse_attribute(value: str) -> Attribute:
    name, colon, attribute_value = value.partition(":")
    if not name or " " in name:
        raise SdpParseError(f"bad a= line: {value!r}")
    return Attribute(name, attribute_value if colon else None)


def _parse_m_line(value: str) -> Media:
    parts = value.split(" ")
    if len(parts) < 3 or not all(parts):
        raise SdpParseError(f"bad m= line: {value!r}")
    port_text, slash, count_text = parts[1].partition("/")
    if not _is_number(port_text) or int(port_text) > 65535:
        raise SdpParseError(f"bad m= port: {value!r}")
    port_count: int | None = None
    if slash:
        if not _is_number(count_text):
            raise SdpParseError(f"bad m= port count: {value!r}")
        port_count = int(count_text)
    return Media(parts[0], int(port_text), parts[2], parts[3:], port_count)
