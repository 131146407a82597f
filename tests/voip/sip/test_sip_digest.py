import pytest

from voip.sip.digest import (
    DigestChallenge,
    DigestCredentials,
    DigestServer,
    DigestVerdict,
    build_credentials,
    compute_ha1,
    compute_response,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
)
from voip.sip.errors import SipParseError


def test_rfc2617_md5_vector() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        ha1,
        algorithm="MD5",
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    challenge = DigestChallenge(
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm=algorithm,
        qop=("auth", "auth-int"),
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    )
    credentials = build_credentials(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert credentials.response == expected
    assert credentials.nc == "00000001" and credentials.qop == "auth"
    assert parse_credentials(str(credentials)) == credentials


def test_rfc2069_legacy_vector() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "CircleOfLife")
    response = compute_response(
        ha1,
        algorithm="MD5",
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
    )
    assert response == "1949323746fe6a43ef61f9606e7febea"


def test_parse_challenge_and_str_roundtrip() -> None:
    value = (
        'Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth,auth-int", '
        'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
    )
    challenge = parse_challenge(value)
    assert challenge.realm == "atlanta.com"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.opaque == "" and not challenge.stale
    assert parse_challenge(str(challenge)) == challenge
    stale = DigestChallenge("r", "n", "SHA-256", stale=True)
    assert "stale=true" in str(stale) and parse_challenge(str(stale)).stale


def test_parse_auth_params_escapes_and_spacing() -> None:
    scheme, params = parse_auth_params('Digest  username="a\\"b" ,realm = "r,1",nc=00000001')
    assert scheme == "Digest"
    assert params == {"username": 'a"b', "realm": "r,1", "nc": "00000001"}


@pytest.mark.parametrize(
    "bad",
    [
        'Digest realm="x',
        "Digest realm",
        "Digest realm=",
        'Digest realm="a" nonce="b"',
        'Basic realm="x"',
        "Di<gest",
        "Digest a=b, =c",
    ],
)
def test_bad_challenges(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_challenge(bad)


def test_bad_credentials() -> None:
    with pytest.raises(SipParseError):
        parse_credentials('Digest username="a", realm="r", nonce="n", uri="u"')
    with pytest.raises(SipParseError):
        parse_credentials(
            'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth'
        )
    with pytest.raises(SipParseError):
        parse_credentials("Basic dXNlcjpwYXNz")


@pytest.fixture
def server() -> DigestServer:
    return DigestServer("pbx.example", b"secret" * 4, nonce_lifetime=60)


def _answer(
    challenge: DigestChallenge, password: str = "pw", method: str = "REGISTER"
) -> DigestCredentials:
    return build_credentials(
        challenge, username="1001", password=password, method=method, uri="sip:pbx.example"
    )


def test_round_trip_all_algorithms(server: DigestServer) -> None:
    challenges = server.challenges(1000.0)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    for challenge in challenges:
        header = str(_answer(parse_challenge(str(challenge))))
        credentials = parse_credentials(header)
        verdict = server.verify(credentials, method="REGISTER", now=1010.0, password="pw")
        assert verdict is DigestVerdict.OK
        ha1 = compute_ha1("1001", "pbx.example", "pw", challenge.algorithm)
        assert (
            server.verify(credentials, method="REGISTER", now=1010.0, ha1=ha1) is DigestVerdict.OK
        )


@pytest.mark.parametrize(
    ("agent", "offered"),
    [
        ("baresip v1.0.0 (x86_64/linux)", ["SHA-256"]),
        ("Baresip v2.12.0", ["SHA-256"]),
        ("baresip v3.10.0 (x86_64/linux)", ["SHA-256", "MD5"]),
        ("PJSUA v2.15.1 Linux", ["SHA-256", "MD5"]),
        ("", ["SHA-256", "MD5"]),
    ],
)
def test_clients_that_abort_on_unknown_algorithms_get_one(
    server: DigestServer, agent: str, offered: list[str]
) -> None:
    challenges = server.challenges(1000.0, user_agent=agent)
    assert [c.algorithm for c in challenges] == offered


def test_session_algorithm(server: DigestServer) -> None:
    challenge = DigestChallenge("pbx.example", server.make_nonce(0.0), "MD5-sess")
    credentials = _answer(challenge)
    assert server.verify(credentials, method="REGISTER", now=1.0, password="pw") is DigestVerdict.OK


def test_wrong_password_method_and_realm(server: DigestServer) -> None:
    (challenge, _) = server.challenges(0.0)
    credentials = _answer(challenge, password="wrong")
    assert (
        server.verify(credentials, method="REGISTER", now=1.0, password="pw")
        is DigestVerdict.INVALID
    )
    good = _answer(challenge)
    assert server.verify(good, method="INVITE", now=1.0, password="pw") is DigestVerdict.INVALID
    other = DigestServer("other.example", b"secret" * 4)
    assert other.verify(good, method="REGISTER", now=1.0, password="pw") is DigestVerdict.INVALID


def test_stale_nonce(server: DigestServer) -> None:
    (challenge, _) = server.challenges(0.0)
    credentials = _answer(challenge)
    assert (
        server.verify(credentials, method="REGISTER", now=59.0, password="pw") is DigestVerdict.OK
    )
    assert (
        server.verify(credentials, method="REGISTER", now=61.0, password="pw")
        is DigestVerdict.STALE
    )
    wrong = _answer(challenge, password="wrong")
    assert server.verify(wrong, method="REGISTER", now=61.0, password="pw") is DigestVerdict.INVALID


def test_tampered_foreign_and_future_nonces(server: DigestServer) -> None:
    nonce = server.make_nonce(0.0)
    timestamp, salt, mac = nonce.split(".")
    forged_time = f"{int(timestamp, 16) + 3600:x}.{salt}.{mac}"
    for bad_nonce in [forged_time, nonce + "x", "plain", f"{timestamp}.{salt}.{'0' * 32}"]:
        credentials = _answer(DigestChallenge("pbx.example", bad_nonce, "SHA-256"))
        assert (
            server.verify(credentials, method="REGISTER", now=1.0, password="pw")
            is DigestVerdict.INVALID
        )
    foreign = DigestServer("pbx.example", b"another secret").make_nonce(0.0)
    credentials = _answer(DigestChallenge("pbx.example", foreign, "SHA-256"))
    assert (
        server.verify(credentials, method="REGISTER", now=1.0, password="pw")
        is DigestVerdict.INVALID
    )
    future = _answer(DigestChallenge("pbx.example", server.make_nonce(1000.0), "SHA-256"))
    assert server.verify(future, method="REGISTER", now=1.0, password="pw") is DigestVerdict.INVALID
    assert server.nonce_age(server.make_nonce(10.0), 25.0) == 15.0


def test_legacy_and_algorithm_policy(server: DigestServer) -> None:
    legacy = DigestChallenge("pbx.example", server.make_nonce(0.0), "MD5", qop=())
    credentials = _answer(legacy)
    assert credentials.qop is None and credentials.cnonce is None
    assert (
        server.verify(credentials, method="REGISTER", now=1.0, password="pw")
        is DigestVerdict.INVALID
    )
    lenient = DigestServer("pbx.example", b"secret" * 4, allow_legacy=True)
    assert (
        lenient.verify(credentials, method="REGISTER", now=1.0, password="pw") is DigestVerdict.OK
    )
    sha_only = DigestServer("pbx.example", b"secret" * 4, algorithms=("SHA-256",))
    md5 = _answer(DigestChallenge("pbx.example", sha_only.make_nonce(0.0), "MD5"))
    assert sha_only.verify(md5, method="REGISTER", now=1.0, password="pw") is DigestVerdict.INVALID
    int_qop = DigestCredentials(
        "1001", "pbx.example", md5.nonce, "sip:x", "0", "SHA-256", "auth-int", "00000001", "c"
    )
    assert (
        sha_only.verify(int_qop, method="REGISTER", now=1.0, password="pw") is DigestVerdict.INVALID
    )
    sess_without_cnonce = DigestCredentials(
        "1001", "pbx.example", md5.nonce, "sip:x", "0", "SHA-256-sess"
    )
    assert (
        lenient.verify(sess_without_cnonce, method="REGISTER", now=1.0, password="pw")
        is DigestVerdict.INVALID
    )
    with pytest.raises(SipParseError):
        build_credentials(
            DigestChallenge("r", "n", "SHA-512"), username="u", password="p", method="M", uri="u"
        )
    with pytest.raises(SipParseError):
        DigestServer("r", b"s", algorithms=("SHA-512",))
    with pytest.raises(TypeError):
        server.verify(md5, method="REGISTER", now=1.0)
