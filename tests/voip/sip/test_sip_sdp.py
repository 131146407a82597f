import pytest
from hypothesis import given
from hypothesis import strategies as st

from voip.sip.errors import SdpParseError
from voip.sip.sdp import (
    Attribute,
    Connection,
    Media,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
    parse_rtpmap,
    parse_sdp,
)

RFC4566_EXAMPLE = (
    "v=0\r\n"
    "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\n"
    "s=SDP Seminar\r\n"
    "i=A Seminar on the session description protocol\r\n"
    "u=http://www.example.com/seminars/sdp.pdf\r\n"
    "e=j.doe@example.com (Jane Doe)\r\n"
    "p=+1 617 555-6011\r\n"
    "c=IN IP4 224.2.17.12/127\r\n"
    "b=CT:128\r\n"
    "t=2873397496 2873404696\r\n"
    "r=7d 1h 0 25h\r\n"
    "t=0 0\r\n"
    "z=2882844526 -1h 2898848070 0\r\n"
    "k=prompt\r\n"
    "a=recvonly\r\n"
    "m=audio 49170 RTP/AVP 0\r\n"
    "m=video 51372/2 RTP/AVP 99\r\n"
    "i=the video\r\n"
    "c=IN IP4 224.2.17.13/127\r\n"
    "b=AS:512\r\n"
    "k=clear:secret\r\n"
    "a=rtpmap:99 h263-1998/90000\r\n"
)

PHONE_OFFER = (
    "v=0\r\n"
    "o=- 3849204 3849204 IN IP4 192.0.2.10\r\n"
    "s=pjmedia\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "a=X-nat:0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\n"
    "a=rtcp:4001 IN IP4 192.0.2.10\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=sendrecv\r\n"
    "m=video 0 RTP/AVP 96\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
)


@pytest.mark.parametrize("text", [RFC4566_EXAMPLE, PHONE_OFFER])
def test_round_trip_is_exact(text: str) -> None:
    session = parse_sdp(text.encode())
    assert str(session) == text
    assert bytes(session) == text.encode()


def test_rfc4566_fields() -> None:
    session = parse_sdp(RFC4566_EXAMPLE)
    assert session.origin == Origin("jdoe", "2890844526", "2890842807", "10.47.16.5")
    assert session.connection == Connection("224.2.17.12/127")
    assert [t.start for t in session.times] == [2873397496, 0]
    assert session.times[0].repeats == ["7d 1h 0 25h"]
    assert session.direction == "recvonly"
    audio, video = session.media
    assert audio.formats == ["0"] and audio.port_count is None
    assert video.port == 51372 and video.port_count == 2
    assert video.key == "clear:secret" and video.bandwidths == ["AS:512"]
    assert session.direction_of(audio) == "recvonly"
    assert session.connection_of(video) == Connection("224.2.17.13/127")
    assert video.rtpmaps() == {99: RtpMap(99, "h263-1998", 90000)}


def test_phone_offer_helpers() -> None:
    session = parse_sdp(PHONE_OFFER.replace("\r\n", "\n"))
    audio = session.media[0]
    assert audio.rtpmaps()[101] == RtpMap(101, "telephone-event", 8000)
    assert session.media[1].rtpmaps()[96].channels == 2
    assert audio.fmtp(101) == "0-16" and audio.fmtp(0) is None
    assert audio.get_attribute("rtcp") == "4001 IN IP4 192.0.2.10"
    assert audio.get_attribute("sendrecv") == "" and audio.get_attribute("nope") is None
    assert session.get_attribute("X-nat") == "0"
    assert not session.is_on_hold
    assert str(session) == PHONE_OFFER


def test_hold_detection() -> None:
    session = parse_sdp(PHONE_OFFER)
    audio = session.media[0]
    audio.set_direction("sendonly")
    assert audio.direction == "sendonly" and session.is_on_hold
    assert str(session).count("a=sendonly") == 1 and "a=sendrecv" not in str(session)
    audio.set_direction("recvonly")
    assert not session.is_on_hold
    session.connection = Connection("0.0.0.0")
    assert session.is_on_hold
    session.connection = Connection("192.0.2.10")
    session.set_direction("inactive")
    audio.attributes = [a for a in audio.attributes if a.name != "recvonly"]
    assert session.direction_of(audio) == "inactive" and session.is_on_hold
    with pytest.raises(ValueError):
        audio.set_direction("sideways")
    assert not SessionDescription(Origin("-", "1", "1", "h")).is_on_hold


def test_build_from_scratch() -> None:
    session = SessionDescription(
        Origin("unicomm", "1", "2", "198.51.100.1"),
        connection=Connection("198.51.100.1"),
        media=[
            Media("audio", 20000, "RTP/AVP", ["0"], attributes=[Attribute("rtpmap", "0 PCMU/8000")])
        ],
    )
    assert str(session) == (
        "v=0\r\no=unicomm 1 2 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n"
        "t=0 0\r\nm=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    assert parse_sdp(str(session)) == session
    assert Timing() == Timing(0, 0, [])
    assert str(RtpMap(111, "opus", 48000, 2)) == "111 opus/48000/2"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "v=0\r\n",
        "v=1\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n",
        "v=0\r\ns=-\r\no=- 1 1 IN IP4 h\r\nt=0 0\r\n",
        "o=- 1 1 IN IP4 h\r\nv=0\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nx=unknown\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=now 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nb=AS\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1/x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\na=\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=1d\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nnonsense\r\n",
    ],
)
def test_rejects_malformed(bad: str) -> None:
    with pytest.raises(SdpParseError):
        parse_sdp(bad)


def test_rejects_non_utf8_and_bad_rtpmap() -> None:
    with pytest.raises(SdpParseError):
        parse_sdp(b"v=0\r\no=\xff 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n")
    for bad in ["x PCMU/8000", "0 PCMU", "0 PCMU/x", "0 PCMU/8000/1/2", "\u00b2 PCMU/8000"]:
        with pytest.raises(SdpParseError):
            parse_rtpmap(bad)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise(data: bytes) -> None:
    try:
        session = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n" + data)
    except SdpParseError:
        return
    for media in session.media:
        try:
            media.rtpmaps()
        except SdpParseError:
            pass
