"""Property tests: round trips of well-formed messages, and no crash on any input."""

from hypothesis import given, settings
from hypothesis import strategies as st

from voip.sip.errors import SipParseError
from voip.sip.headers import Headers, canonical_name
from voip.sip.message import Request, Response
from voip.sip.parser import StreamParser, parse_message
from voip.sip.uri import SipUri

settings.register_profile("sip", max_examples=300, deadline=None)
settings.load_profile("sip")

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN = _ALNUM + "-.!%*_+`'~"
tokens = st.text(_TOKEN, min_size=1, max_size=12)
lower_tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.lists(st.text("0123456789abcdef", min_size=1, max_size=4), min_size=2, max_size=8).map(
        lambda parts: "[" + ":".join(parts) + "]"
    ),
)
params = st.dictionaries(lower_tokens, st.one_of(st.none(), tokens), max_size=3)
sip_uris = st.builds(
    SipUri,
    host=hosts,
    user=st.one_of(st.none(), st.text(_ALNUM + "-_.!~*'()&=+$,", min_size=1, max_size=12)),
    port=st.one_of(st.none(), st.integers(0, 65535)),
    params=params,
    scheme=st.sampled_from(["sip", "sips"]),
)
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40).map(
    lambda s: s.strip(" \t")
)
_RESERVED = {"via", "from", "to", "call-id", "cseq", "content-length", "max-forwards"}
extra_headers = st.lists(
    st.tuples(
        tokens.filter(lambda n: canonical_name(n).lower() not in _RESERVED),
        header_text,
    ),
    max_size=6,
)
methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "REGISTER", "OPTIONS"]), tokens)


@st.composite
def core_headers(draw: st.DrawFn, method: str) -> Headers:
    via_host = draw(hosts)
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS"]))
    branch = "z9hG4bK" + draw(tokens)
    headers = Headers(
        [
            (
                "Via",
                f"SIP/2.0/{transport} {via_host};branch={branch}",
            ),
            ("From", f"<{draw(sip_uris)}>;tag={draw(tokens)}"),
            ("To", f'"{draw(st.text(_ALNUM + " ", max_size=10))}" <{draw(sip_uris)}>'),
            ("Call-ID", draw(tokens)),
            ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
            ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ]
    )
    for name, value in draw(extra_headers):
        headers.insert(draw(st.integers(0, len(headers))), name, value)
    return headers


@st.composite
def headers_and_body(draw: st.DrawFn, method: str) -> tuple[Headers, bytes]:
    headers = draw(core_headers(method))
    body = draw(st.binary(max_size=64))
    # Serialising always writes Content-Length, so a message equal to its
    # reparse must already carry it (anywhere among the headers).
    headers.insert(draw(st.integers(0, len(headers))), "Content-Length", str(len(body)))
    return headers, body


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(methods)
    headers, body = draw(headers_and_body(method))
    return Request(method, draw(sip_uris), headers, body)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    reason = draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20))
    headers, body = draw(headers_and_body(draw(methods)))
    return Response(draw(st.integers(100, 699)), reason, headers, body)


messages = st.one_of(requests(), responses())


@given(messages)
def test_parse_of_serialised_message_round_trips(message: Request | Response) -> None:
    data = bytes(message)
    parsed = parse_message(data)
    assert parsed == message
    assert bytes(parsed) == data
    stream = StreamParser().feed(data)
    assert stream == [message]


def _parse_or_reject(data: bytes) -> None:
    try:
        parse_message(data)
    except SipParseError:
        pass


def _stream_or_reject(data: bytes, chunk: int) -> None:
    parser = StreamParser(max_message_size=2048)
    try:
        for index in range(0, len(data), chunk):
            parser.feed(data[index : index + chunk])
    except SipParseError:
        pass


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    _parse_or_reject(data)
    _stream_or_reject(data, 17)


@given(messages, st.data())
def test_mutated_messages_parse_or_raise_parse_error(
    message: Request | Response, data: st.DataObject
) -> None:
    raw = bytearray(bytes(message))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        byte = data.draw(st.sampled_from([0, 9, 10, 13, 32, 34, 44, 58, 59, 60, 62, 64, 0xFF]))
        if action == "flip":
            raw[position] = byte
        elif action == "insert":
            raw.insert(position, byte)
        elif action == "delete":
            del raw[position]
        else:
            del raw[position:]
        if not raw:
            break
    mutated = bytes(raw)
    _parse_or_reject(mutated)
    _stream_or_reject(mutated, data.draw(st.integers(1, 64)))
    try:
        parsed = parse_message(mutated, validate=False)
    except SipParseError:
        return
    for accessor in ("vias", "contacts", "routes", "record_routes", "expires", "cseq", "to_tag"):
        try:
            getattr(parsed, accessor)
        except SipParseError:
            pass
