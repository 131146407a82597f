"""RFC 3842 message-summary bodies, sans-I/O."""

from __future__ import annotations

import pytest

from voip.sip.errors import SipParseError
from voip.sip.message_summary import MessageSummary


def test_a_summary_round_trips() -> None:
    summary = MessageSummary(2, 8, "sip:1001@unicomm", 1, 0)
    body = summary.body()
    assert body == (
        b"Messages-Waiting: yes\r\nMessage-Account: sip:1001@unicomm\r\n"
        b"Voice-Message: 2/8 (1/0)\r\n"
    )
    assert MessageSummary.parse(body) == summary


def test_no_new_message_says_no() -> None:
    assert MessageSummary(0, 3).body().startswith(b"Messages-Waiting: no\r\n")
    assert not MessageSummary.parse("Messages-Waiting: no\n").waiting


def test_waiting_without_counts_means_at_least_one() -> None:
    assert MessageSummary.parse("messages-waiting: YES").new == 1


def test_counts_without_urgent_part_parse() -> None:
    parsed = MessageSummary.parse("Messages-Waiting: yes\r\nVoice-Message: 4/1\r\n")
    assert (parsed.new, parsed.old, parsed.urgent_new) == (4, 1, 0)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "Voice-Message: 1/0",
        "Messages-Waiting: maybe",
        "Messages-Waiting: yes\r\nVoice-Message: a/b",
    ],
)
def test_malformed_bodies_are_refused(body: str) -> None:
    with pytest.raises(SipParseError):
        MessageSummary.parse(body)
