import pytest

from voip.sip.errors import SipParseError
from voip.sip.headers import Headers
from voip.sip.message import CSeq, Request, Response, Via, parse_cseq, parse_via, reason_phrase
from voip.sip.parser import parse_message
from voip.sip.uri import parse_uri


def _request(method: str = "INVITE", extra: list[tuple[str, str]] | None = None) -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP p.example.com"),
            ("Via", "SIP/2.0/TLS q.example.com:5061;branch=z9hG4bK3"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@a.example>;tag=ft"),
            ("To", "<sip:bob@b.example>"),
            ("Call-ID", "cid@10.0.0.1"),
            ("CSeq", f"7 {method}"),
            ("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>"),
            ("Timestamp", "54"),
            ("Contact", '"A" <sip:alice@10.0.0.1>;expires=60, <sip:alice@10.0.0.2>'),
            ("Expires", "3600"),
            *(extra or []),
        ]
    )
    return Request(method, parse_uri("sip:bob@b.example"), headers, b"")


def test_accessors() -> None:
    request = _request()
    request.validate()
    assert [v.sent_by for v in request.vias] == [
        "10.0.0.1:5060",
        "p.example.com",
        "q.example.com:5061",
    ]
    assert request.top_via.branch == "z9hG4bK1"
    assert request.top_via.rport is None and request.top_via.wants_rport
    assert request.cseq == CSeq(7, "INVITE")
    assert [str(c.uri) for c in request.contacts] == ["sip:alice@10.0.0.1", "sip:alice@10.0.0.2"]
    assert request.contacts[0].params == {"expires": "60"}
    assert request.expires == 3600
    assert [str(r.uri) for r in request.record_routes] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert request.routes == []
    assert request.content_type is None


def test_contact_wildcard() -> None:
    request = _request("REGISTER")
    request.headers.set("Contact", "*")
    assert request.is_contact_wildcard and request.contacts == []


def test_serialisation_fixes_content_length() -> None:
    request = _request(extra=[("Content-Length", "999"), ("l", "3")])
    request.body = b"hello"
    data = bytes(request)
    assert data.count(b"Content-Length") == 1
    assert b"Content-Length: 5\r\n" in data
    assert data.endswith(b"\r\n\r\nhello")
    assert parse_message(data) == request.__class__(
        request.method, request.uri, parse_message(data).headers, b"hello"
    )


def test_response_copies_headers_per_8_2_6() -> None:
    request = _request()
    trying = request.response(100)
    assert trying.reason == "Trying"
    assert trying.headers.get("Timestamp") == "54"
    assert trying.to_tag is None
    assert "Record-Route" not in trying.headers
    ringing = request.response(180, to_tag="tt")
    assert ringing.to_tag == "tt"
    assert ringing.headers.get_all("Via") == request.headers.get_all("Via")
    assert ringing.headers.get("Record-Route") == request.headers.get("Record-Route")
    assert "Timestamp" not in ringing.headers and "Contact" not in ringing.headers
    assert ringing.call_id == request.call_id and ringing.cseq == request.cseq
    assert ringing.from_tag == "ft"
    ok = request.response(200, "Fine", body=b"x")
    assert ok.reason == "Fine" and ok.body == b"x" and ok.to_tag
    ok.validate()
    assert bytes(ok).startswith(b"SIP/2.0 200 Fine\r\n")
    options = _request("OPTIONS").response(200)
    assert "Record-Route" not in options.headers


def test_response_keeps_existing_to_tag() -> None:
    request = _request("BYE")
    request.headers.set("To", "<sip:bob@b.example>;tag=existing")
    assert request.response(200, to_tag="other").to_tag == "existing"


def test_reason_phrases() -> None:
    assert reason_phrase(486) == "Busy Here"
    assert reason_phrase(499) == "Bad Request"
    assert reason_phrase(299) == "OK"
    assert reason_phrase(799) == "Unknown"


def test_via_roundtrip_and_errors() -> None:
    via = parse_via("SIP/2.0/udp [::1]:5070;branch=z9hG4bKx;received=::1;rport=9")
    assert via == Via("UDP", "[::1]", 5070, {"branch": "z9hG4bKx", "received": "::1", "rport": "9"})
    assert str(via) == "SIP/2.0/UDP [::1]:5070;branch=z9hG4bKx;received=::1;rport=9"
    assert via.rport == 9
    assert parse_via("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx").transport == "WSS"
    for bad in [
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host:x",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP [::1]x",
        "SIP/2.0/UDP ho<st",
        "SIP/2.0/UD@P host",
    ]:
        with pytest.raises(SipParseError):
            parse_via(bad)
    with pytest.raises(SipParseError):
        _ = parse_via("SIP/2.0/UDP h;rport=x").rport


def test_cseq_errors() -> None:
    assert str(parse_cseq(" 12   ACK ")) == "12 ACK"
    for bad in ["", "1", "x INVITE", "1 INVITE extra", "-1 INVITE", "2147483648 INVITE"]:
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_missing_headers_raise_parse_errors() -> None:
    empty = Response(200, "OK")
    for accessor in ("top_via", "call_id", "cseq", "from_", "to"):
        with pytest.raises(SipParseError):
            getattr(empty, accessor)
    assert empty.max_forwards is None and empty.expires is None
    empty.headers.add("Call-ID", "has space")
    with pytest.raises(SipParseError):
        _ = empty.call_id
    empty.headers.add("Via", " ")
    with pytest.raises(SipParseError):
        _ = empty.top_via
