"""SDP anchoring, sans-I/O: nothing of the sender's address survives the rewrite."""

from __future__ import annotations

import pytest

from voip.sdp_anchor import anchor_sdp, try_anchor
from voip.sip.errors import SdpParseError

PHONE_OFFER = (
    b"v=0\r\n"
    b"o=- 3912345 3912346 IN IP4 192.168.10.23\r\n"
    b"s=pjmedia\r\n"
    b"c=IN IP4 192.168.10.23\r\n"
    b"t=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\n"
    b"a=rtcp:4001 IN IP4 192.168.10.23\r\n"
    b"a=candidate:1 1 UDP 2130706431 192.168.10.23 4000 typ host\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
    b"m=video 4002 RTP/AVP 96\r\n"
    b"c=IN IP4 192.168.10.24\r\n"
    b"a=rtpmap:96 H264/90000\r\n"
)


def test_the_relay_replaces_every_address_and_the_peer_is_learnt() -> None:
    anchored = anchor_sdp(PHONE_OFFER, "203.0.113.5", 31000)
    text = anchored.body.decode()
    assert anchored.peer == ("192.168.10.23", 4000)
    assert "192.168.10." not in text
    assert "o=unicomm 3912345 3912346 IN IP4 203.0.113.5" in text
    assert "c=IN IP4 203.0.113.5" in text
    assert "m=audio 31000 RTP/AVP 0 8 101" in text
    assert "m=video 0 RTP/AVP 96" in text  # only audio is relayed; the rest is refused
    assert "a=rtpmap:101 telephone-event/8000" in text  # RFC 4733 digits still negotiated
    assert "candidate" not in text and "a=rtcp" not in text


def test_a_held_stream_stays_held_without_the_address() -> None:
    held = PHONE_OFFER.replace(b"c=IN IP4 192.168.10.23", b"c=IN IP4 0.0.0.0")
    anchored = anchor_sdp(held, "203.0.113.5", 31000)
    assert anchored.peer is None
    assert b"192.168" not in anchored.body
    assert b"c=IN IP4 0.0.0.0" in anchored.body


@pytest.mark.parametrize("body", [b"", b"hello", b"v=0\r\nnonsense\r\n"])
def test_what_is_not_sdp_is_refused(body: bytes) -> None:
    with pytest.raises((SdpParseError, ValueError)):
        anchor_sdp(body, "203.0.113.5", 31000)
    assert try_anchor(body, "203.0.113.5", 31000) is None
