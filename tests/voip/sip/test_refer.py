"""REFER and Replaces parsing, and the sipfrag NOTIFYs of a transfer (RFC 3515, 3891)."""

from __future__ import annotations

import pytest

from voip.sip.errors import SipParseError
from voip.sip.refer import Replaces, notify_headers, parse_refer_to, parse_replaces, sipfrag


def test_a_blind_refer_to_names_the_target() -> None:
    target = parse_refer_to("<sip:1003@127.0.0.1:5060>")
    assert target.number == "1003" and target.replaces is None
    assert parse_refer_to("sip:1003@example.org").number == "1003"


def test_an_attended_refer_to_carries_replaces_escaped_in_the_uri() -> None:
    target = parse_refer_to("<sip:1003@h?Replaces=abc%40host%3Bto-tag%3D12%3Bfrom-tag%3D34>")
    assert target.replaces == Replaces("abc@host", "12", "34")
    assert parse_replaces("x@y;from-tag=2;to-tag=1") == Replaces("x@y", "1", "2")


@pytest.mark.parametrize("bad", ["", "<tel:+861012345>", "<sip:example.org>", "<sip:"])
def test_a_refer_to_without_a_sip_user_is_refused(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_refer_to(bad)


def test_replaces_needs_both_tags() -> None:
    with pytest.raises(SipParseError):
        parse_replaces("abc@host;to-tag=1")


def test_progress_notifies_keep_the_subscription_and_the_final_one_ends_it() -> None:
    assert sipfrag(100) == b"SIP/2.0 100 Trying\r\n"
    assert sipfrag(486) == b"SIP/2.0 486 Busy Here\r\n"
    assert dict(notify_headers(100))["Subscription-State"].startswith("active")
    assert dict(notify_headers(200)) == {
        "Event": "refer",
        "Subscription-State": "terminated;reason=noresource",
    }
