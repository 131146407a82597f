"""parse_head: enough of a broken request to answer it."""

from __future__ import annotations

import pytest

from voip.sip.errors import SipParseError
from voip.sip.message import Request
from voip.sip.parser import parse_head, parse_message

HEAD = (
    b"INVITE sip:1002@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"
    b"From: <sip:1001@example.com>;tag=1\r\n"
    b"To: <sip:1002@example.com>\r\n"
    b"Call-ID: x@y\r\n"
    b"CSeq: 1 INVITE\r\n"
)


def test_bad_content_length_still_gives_the_head() -> None:
    data = HEAD + b"Content-Length: 500\r\n\r\nv=0\r\n"
    with pytest.raises(SipParseError):
        parse_message(data)
    head = parse_head(data)
    assert isinstance(head, Request)
    assert head.response(400).headers.get("Call-ID") == "x@y"


def test_truncated_head_is_parsed_as_far_as_it_goes() -> None:
    head = parse_head(HEAD + b"Max-Forw")
    assert isinstance(head, Request)
    assert head.cseq.number == 1


def test_garbage_raises_the_parsers_error() -> None:
    with pytest.raises(SipParseError):
        parse_head(b"\x00\x01 not sip at all")
