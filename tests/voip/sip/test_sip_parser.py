import pytest

from voip.sip.errors import SipParseError
from voip.sip.message import Request, Response
from voip.sip.parser import (
    InvalidMessage,
    KeepAlivePing,
    KeepAlivePong,
    StreamParser,
    parse_message,
)
from voip.sip.uri import SipUri

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_plain_invite() -> None:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert isinstance(message.uri, SipUri) and message.uri.user == "bob"
    assert message.body == b"v=0\n"
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert message.cseq.number == 314159 and message.cseq.method == "INVITE"
    assert message.from_tag == "1928301774" and message.to_tag is None
    assert message.max_forwards == 70
    assert message.top_via.branch == "z9hG4bK776asdhds"
    assert message.content_type == "application/sdp"
    assert bytes(message) == INVITE


def test_torture_wide_range_of_valid_constructs() -> None:
    # In the spirit of RFC 4475 §3.1.1.1 "wsinv": folding, compact forms,
    # odd spacing, escaped quotes, multiple Via values on one line, IPv6.
    data = (
        b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
        b"TO :\r\n"
        b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
        b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
        b"  ;\r\n"
        b"  tag = 98asjd8\r\n"
        b"MaX-fOrWaRdS: 0068\r\n"
        b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
        b"Content-Length   : 5\r\n"
        b"cseq: 0009\r\n"
        b"  INVITE\r\n"
        b"Via  : SIP  /   2.0\r\n"
        b" /UDP\r\n"
        b"    192.0.2.2;branch=390skdjuw\r\n"
        b"s :\r\n"
        b"NewFangledHeader:   newfangled value\r\n"
        b" continued newfangled value\r\n"
        b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Route:\r\n"
        b" <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
        b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
        b"  branch  =   z9hG4bK9ikj8  ,\r\n"
        b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
        b" z9hG4bK30239, SIP/2.0/UDP [2001:db8::9:1]:5070;received=192.0.2.4\r\n"
        b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
        b"      newvalue ;\r\n"
        b"  secondparam ; q = 0.33\r\n"
        b"\r\n"
        b"v=0\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, Request)
    assert message.to.tag == "1918181833n"
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_tag == "98asjd8"
    assert message.max_forwards == 68
    assert message.cseq.number == 9
    vias = message.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP", "UDP"]
    assert vias[0].host == "192.0.2.2" and vias[0].branch == "390skdjuw"
    assert vias[1].branch == "z9hG4bK9ikj8"
    assert vias[2].branch == "z9hG4bK30239"
    assert vias[3].host == "[2001:db8::9:1]" and vias[3].port == 5070
    assert vias[3].received == "192.0.2.4"
    assert message.headers.get("Subject") == ""
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert message.routes[0].uri == SipUri("services.example.com", params={"lr": None})
    assert message.body == b"v=0\r\n"
    reparsed = parse_message(bytes(message))
    assert reparsed == message
    assert bytes(reparsed) == bytes(message)


def test_lf_only_and_leading_crlf_and_no_content_length() -> None:
    data = INVITE.replace(b"\r\n", b"\n").replace(b"Content-Length: 4\n", b"")
    message = parse_message(b"\r\n" + data)
    assert message.body == b"v=0\n"
    assert bytes(message).endswith(b"Content-Length: 4\r\n\r\nv=0\n")


def test_body_is_truncated_to_content_length() -> None:
    message = parse_message(INVITE + b"trailing garbage")
    assert message.body == b"v=0\n"


def test_response_parsing() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=5062;received=1.2.3.4\r\n"
        b"To: <sip:bob@b>;tag=xyz\r\nFrom: <sip:a@a>;tag=abc\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, Response)
    assert message.status == 180 and message.reason == "Ringing"
    assert message.is_provisional and not message.is_final
    via = message.top_via
    assert via.rport == 5062 and via.received == "1.2.3.4" and via.wants_rport
    assert via.sent_by == "10.0.0.1:5060"
    assert message.to_tag == "xyz"
    assert message.body == b""
    empty_reason = parse_message(data.replace(b"180 Ringing", b"200 "))
    assert isinstance(empty_reason, Response) and empty_reason.reason == ""


def _invite_with(replace: bytes, by: bytes) -> bytes:
    assert replace in INVITE
    return INVITE.replace(replace, by)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            _invite_with(
                b"INVITE sip:bob@biloxi.com SIP/2.0", b"INVITE  sip:bob@biloxi.com SIP/2.0"
            ),
            400,
        ),
        (_invite_with(b"INVITE sip:bob@biloxi.com SIP/2.0", b"INVITE sip:bob@biloxi.com"), 400),
        (_invite_with(b"SIP/2.0\r\nVia", b"SIP/7.0\r\nVia"), 505),
        (_invite_with(b"INVITE sip:", b"IN<VITE sip:"), 400),
        (_invite_with(b"sip:bob@biloxi.com SIP", b"bob@biloxi.com SIP"), 400),
        (_invite_with(b"Content-Length: 4", b"Content-Length: -4"), 400),
        (_invite_with(b"Content-Length: 4", b"Content-Length: 99999999999999999"), 400),
        (_invite_with(b"Content-Length: 4", b"Content-Length: 5000"), 400),
        (_invite_with(b"Content-Length: 4", b"Content-Length: four"), 400),
        (_invite_with(b"Content-Length: 4\r\n", b"Content-Length: 4\r\nl: 3\r\n"), 400),
        (_invite_with(b"Max-Forwards: 70", b"Max-Forwards 70"), 400),
        (_invite_with(b"Max-Forwards: 70", b"Max-Forwards: seventy"), 400),
        (_invite_with(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (_invite_with(b"CSeq: 314159 INVITE", b"CSeq: 99999999999 INVITE"), 400),
        (_invite_with(b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", b""), 400),
        (_invite_with(b"Via: SIP/2.0/UDP pc33", b"Via: SIP/2.0 pc33"), 400),
        (_invite_with(b"To: Bob <sip:bob@biloxi.com>", b"To: Bob sip:bob@biloxi.com>"), 400),
        (_invite_with(b"Max-Forwards", b"\x00Max-Forwards"), 400),
        (_invite_with(b"Bob", b"B\xffb"), 400),
        (_invite_with(b"Bob", b"B\rb"), 400),
        (_invite_with(b"\r\n\r\n", b"\r\n"), 400),
        (b" continuation first\r\n\r\n", 400),
        (b"SIP/2.0 99 Odd\r\n\r\n", 400),
        (b"SIP/2.0\r\n\r\n", 400),
        (b"SIP/3.0 200 OK\r\n\r\n", 505),
        (b"\r\n\r\n", 400),
        (b"", 400),
    ],
)
def test_rejects_bad_messages(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status


def test_folded_continuation_before_header_is_rejected() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n")


def test_unvalidated_parse_accepts_missing_headers() -> None:
    message = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", validate=False)
    assert isinstance(message, Request) and len(message.headers) == 0
    with pytest.raises(SipParseError):
        message.validate()


def test_lowercase_version_is_accepted() -> None:
    message = parse_message(INVITE.replace(b"SIP/2.0\r\nVia", b"sip/2.0\r\nVia"))
    assert message.cseq.method == "INVITE"


def test_stream_parser_splits_and_reassembles() -> None:
    parser = StreamParser()
    data = INVITE + INVITE
    events = []
    for index in range(0, len(data), 7):
        events.extend(parser.feed(data[index : index + 7]))
    assert len(events) == 2
    assert all(isinstance(e, Request) and e.body == b"v=0\n" for e in events)
    assert len(parser.feed(INVITE * 3)) == 3


def test_stream_parser_keepalives() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == [KeepAlivePing()]
    assert parser.feed(b"\r\n") == [KeepAlivePong()]
    events = parser.feed(b"\r\n\r\n" + INVITE + b"\r\n\r\n")
    assert isinstance(events[0], KeepAlivePing)
    assert isinstance(events[1], Request)
    assert isinstance(events[2], KeepAlivePing)
    assert parser.feed(b"\r\n\r") == []
    assert parser.feed(b"\n") == [KeepAlivePing()]
    assert parser.feed(b"\r\nINVITE")[0] == KeepAlivePong()


def test_stream_parser_requires_content_length() -> None:
    parser = StreamParser()
    with pytest.raises(SipParseError):
        parser.feed(INVITE.replace(b"Content-Length: 4\r\n", b""))


def test_stream_parser_limits_size() -> None:
    parser = StreamParser(max_message_size=1000)
    parser.feed(b"INVITE sip:a@b SIP/2.0\r\nX-Long: ")
    with pytest.raises(SipParseError) as info:
        for _ in range(100):
            parser.feed(b"a" * 100)
    assert info.value.status == 413
    big_body = StreamParser(max_message_size=1000)
    with pytest.raises(SipParseError) as info:
        big_body.feed(_invite_with(b"Content-Length: 4", b"Content-Length: 5000"))
    assert info.value.status == 413


def test_stream_parser_rejects_stray_cr() -> None:
    with pytest.raises(SipParseError):
        StreamParser().feed(b"\r\r\n\r\n")


def test_stream_parser_reports_invalid_message_and_continues() -> None:
    parser = StreamParser()
    bad = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: nonsense")
    first, second, third = parser.feed(INVITE + bad + INVITE)
    assert isinstance(first, Request) and isinstance(third, Request)
    assert isinstance(second, InvalidMessage) and second.error.status == 400
    assert second.message.headers.get("CSeq") == "nonsense"
