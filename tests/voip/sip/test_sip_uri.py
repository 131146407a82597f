import pytest

from voip.sip.errors import SipParseError
from voip.sip.uri import AbsoluteUri, NameAddr, SipUri, parse_name_addr, parse_sip_uri, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_sip_uri("sips:alice:secret@atlanta.com:5061;transport=TCP;lr?subject=project&x=1")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "atlanta.com", 5061)
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.transport == "tcp" and uri.loose_route
    assert uri.headers == {"subject": "project", "x": "1"}
    assert str(uri) == "sips:alice:secret@atlanta.com:5061;transport=TCP;lr?subject=project&x=1"
    assert uri.host_port == "atlanta.com:5061"


def test_ipv6_and_telephone_user() -> None:
    uri = parse_sip_uri("sip:+1-212-555-1212;isub=1:ab@[2001:db8::10]:5070;user=phone")
    assert uri.user == "+1-212-555-1212;isub=1:ab"
    assert uri.password is None
    assert uri.host == "[2001:db8::10]" and uri.port == 5070
    assert str(uri) == "sip:+1-212-555-1212;isub=1:ab@[2001:db8::10]:5070;user=phone"
    assert parse_sip_uri("sip:[::1]").host == "[::1]"


def test_escaped_user_parameter_with_at() -> None:
    uri = parse_sip_uri("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"


def test_rfc3261_equal_uris() -> None:
    equal_pairs = [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ]
    for a, b in equal_pairs:
        assert parse_uri(a) == parse_uri(b), (a, b)
        assert hash(parse_uri(a)) == hash(parse_uri(b))


def test_rfc3261_unequal_uris() -> None:
    unequal_pairs = [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;newparam=6"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ]
    for a, b in unequal_pairs:
        assert parse_uri(a) != parse_uri(b), (a, b)
    assert parse_uri("sip:a@b") != "sip:a@b"


def test_absolute_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123")
    assert uri == AbsoluteUri("tel", "+1-201-555-0123")
    assert str(uri) == "tel:+1-201-555-0123"
    with pytest.raises(SipParseError) as info:
        parse_sip_uri("tel:+123")
    assert info.value.status == 416


@pytest.mark.parametrize(
    "bad",
    [
        "alice@atlanta.com",
        "sip:",
        "sip:@host",
        "sip:user@",
        "sip:host:port",
        "sip:host:99999",
        "sip:[::1",
        "sip:[::1]x",
        "sip:ho st",
        "sip:host;=x",
        "sip:host?noequals",
        "sip:us<er@host",
        "1sip:host",
        "tel:",
        "tel:a b",
    ],
)
def test_bad_uris(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(bad)


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Alice \\"A\\" Smith" <sip:alice@atlanta.com>;tag=1928301774')
    assert quoted.display_name == 'Alice "A" Smith'
    assert quoted.tag == "1928301774"
    assert str(quoted) == '"Alice \\"A\\" Smith" <sip:alice@atlanta.com>;tag=1928301774'

    token = parse_name_addr("Bob   Smith<sip:bob@biloxi.com;transport=tcp> ;tag=a6c85cf")
    assert token.display_name == "Bob Smith"
    assert isinstance(token.uri, SipUri) and token.uri.params == {"transport": "tcp"}
    assert token.params == {"tag": "a6c85cf"}

    bare = parse_name_addr("sip:carol@chicago.com;tag=887s;expires=60")
    assert bare.display_name is None
    assert str(bare.uri) == "sip:carol@chicago.com"
    assert bare.params == {"tag": "887s", "expires": "60"}

    anonymous = parse_name_addr("<sip:anonymous@anonymous.invalid>")
    assert anonymous.display_name is None and anonymous.params == {}
    assert str(NameAddr(parse_uri("sip:a@b"), "A", {"tag": "x"})) == '"A" <sip:a@b>;tag=x'


@pytest.mark.parametrize(
    "bad",
    [
        '"unterminated <sip:a@b>',
        '"A" sip:a@b',
        "A <sip:a@b",
        "sip:a@b,c",
        "<sip:a@b>;tag=a b",
        "A@b <sip:a@b>",
        "<sip:a@b>;",
        '"A"',
    ],
)
def test_bad_name_addr(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(bad)
