import pytest

from voip.sip.errors import SipParseError
from voip.sip.headers import (
    Headers,
    canonical_name,
    param_value,
    parse_params,
    quote,
    split_list,
    unquote,
)


def test_compact_forms_are_canonicalised() -> None:
    assert canonical_name("i") == "Call-ID"
    assert canonical_name("v") == "Via"
    assert canonical_name("x") == "Session-Expires"
    assert canonical_name("CALL-ID") == "Call-ID"
    assert canonical_name("X-Custom") == "X-Custom"


def test_headers_case_insensitive_and_ordered() -> None:
    headers = Headers([("v", "a"), ("To", "t"), ("VIA", "b")])
    assert headers.get("via") == "a"
    assert headers.get_all("Via") == ["a", "b"]
    assert list(headers) == [("Via", "a"), ("To", "t"), ("Via", "b")]
    assert "t" in headers and "From" not in headers
    assert len(headers) == 3


def test_set_replaces_first_and_drops_rest() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("Via", "b")])
    headers.set("via", "c")
    assert list(headers) == [("Via", "c"), ("To", "t")]
    headers.set("Expires", "60")
    assert headers.get("expires") == "60"


def test_prepend_and_remove_first() -> None:
    headers = Headers([("To", "t"), ("Via", "a, b"), ("Via", "c")])
    headers.prepend("Via", "z")
    assert headers.get_list("Via") == ["z", "a", "b", "c"]
    assert headers.remove_first("Via") == "z"
    assert headers.remove_first("Via") == "a"
    assert headers.get_all("Via") == ["b", "c"]
    headers.remove("via")
    assert "Via" not in headers
    assert headers.remove_first("Via") is None
    headers.prepend("Route", "<sip:p>")
    assert list(headers)[-1] == ("Route", "<sip:p>")


def test_equality_ignores_name_spelling() -> None:
    assert Headers([("i", "x")]) == Headers([("Call-ID", "x")])
    assert Headers([("i", "x")]) != Headers([("Call-ID", "y")])
    copy = Headers([("A", "1")]).copy()
    copy.add("B", "2")
    assert len(copy) == 2


def test_split_list_respects_quotes_and_angles() -> None:
    value = '"Doe, John" <sip:j@x;a=1,2>;q=0.5 , <sip:b@y>,sip:c@z'
    assert split_list(value) == ['"Doe, John" <sip:j@x;a=1,2>;q=0.5', "<sip:b@y>", "sip:c@z"]
    assert split_list('"a\\",b" <sip:x>') == ['"a\\",b" <sip:x>']
    assert split_list(" ") == []
    assert split_list("INVITE, ACK,,BYE") == ["INVITE", "ACK", "BYE"]


def test_auth_headers_are_not_split() -> None:
    headers = Headers([("WWW-Authenticate", 'Digest realm="a", nonce="b"')])
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']


def test_parse_params() -> None:
    params = parse_params(';tag=abc ; Branch=z9hG4bK1;lr;q="a;b\\"c"')
    assert params == {"tag": "abc", "branch": "z9hG4bK1", "lr": None, "q": '"a;b\\"c"'}
    assert param_value(params, "q") == 'a;b"c'
    assert param_value(params, "tag") == "abc"
    assert param_value(params, "none") is None
    assert parse_params("") == {}


@pytest.mark.parametrize("bad", ["tag=1", ";=1", ";a=", ';a="unterminated', ";a b=1"])
def test_parse_params_rejects(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_params(bad)


def test_quote_roundtrip() -> None:
    for text in ["plain", 'with "quotes"', "back\\slash", ""]:
        assert unquote(quote(text)) == text
    with pytest.raises(SipParseError):
        unquote("bare")
    with pytest.raises(SipParseError):
        unquote('"ends with\\"')
