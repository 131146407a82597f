"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760).

Servers issue stateless nonces: a timestamp and salt signed with an HMAC over a
server secret, so any node sharing the secret can verify them and no nonce
table has to be kept or shared.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import SipParseError
from .headers import is_token, quote

_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}

# A nonce dated this far in the future is a forgery or a badly wrong clock on
# another node; either way it must not extend its own lifetime.
_CLOCK_SKEW = 30.0


def _hash_function(algorithm: str) -> Callable[[bytes], hashlib._Hash]:
    base = algorithm.upper().removesuffix("-SESS")
    try:
        return _HASHES[base]
    except KeyError:
        raise SipParseError(f"unsupported digest algorithm {algorithm!r}") from None


def _h(algorithm: str, text: str) -> str:
    return _hash_function(algorithm)(text.encode("utf-8")).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password), the value a user database may store instead of a password."""
    return _h(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    *,
    algorithm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    if algorithm.upper().endswith("-SESS"):
        if cnonce is None:
            raise SipParseError("session digest algorithms need a cnonce")
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise SipParseError("qop needs nc and cnonce")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest a=b, c="d"`` into the scheme and its parameters (names lowercased)."""
    value = value.strip()
    space = value.find(" ")
    scheme = value if space < 0 else value[:space]
    if not is_token(scheme):
        raise SipParseError("bad authentication scheme")
    params: dict[str, str] = {}
    position = len(scheme)
    length = len(value)
    while position < length:
        while position < length and value[position] in " \t,":
            position += 1
        if position >= length:
            break
        equals = value.find("=", position)
        if equals < 0:
            raise SipParseError("authentication parameter without value")
        name = value[position:equals].strip().lower()
        if not is_token(name):
            raise SipParseError("bad authentication parameter name")
        position = equals + 1
        while position < length and value[position] in " \t":
            position += 1
        if position < length and value[position] == '"':
            chars: list[str] = []
            position += 1
            while True:
                if position >= length:
                    raise SipParseError("unterminated quoted authentication parameter")
                ch = value[position]
                if ch == "\\" and position + 1 < length:
                    position += 1
                    ch = value[position]
                elif ch == '"':
                    position += 1
                    break
                chars.append(ch)
                position += 1
            params[name] = "".join(chars)
        else:
            comma = value.find(",", position)
            end = length if comma < 0 else comma
            token = value[position:end].strip()
            if not token:
                raise SipParseError("empty authentication parameter")
            params[name] = token
            position = end
        while position < length and value[position] in " \t":
            position += 1
        if position < length and value[position] != ",":
            raise SipParseError("authentication parameters must be separated by commas")
    return scheme, params


@dataclass(frozen=True)
class DigestChallenge:
    """The contents of a WWW-Authenticate or Proxy-Authenticate header."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False

    def __str__(self) -> str:
        parts = [f"realm={quote(self.realm)}", f"nonce={quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


def parse_challenge(value: str) -> DigestChallenge:
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise SipParseError(f"not a Digest challenge: {scheme!r}")
    try:
        realm, nonce = params["realm"], params["nonce"]
    except KeyError:
        raise SipParseError("Digest challenge without realm or nonce") from None
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


@dataclass(frozen=True)
class DigestCredentials:
    """The contents of an Authorization or Proxy-Authorization header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    def __str__(self) -> str:
        parts = [
            f"username={quote(self.username)}",
            f"realm={quote(self.realm)}",
            f"nonce={quote(self.nonce)}",
            f"uri={quote(self.uri)}",
            f"response={quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.qop is not None:
            parts.extend([f"qop={self.qop}", f"nc={self.nc}", f"cnonce={quote(self.cnonce or '')}"])
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


def parse_credentials(value: str) -> DigestCredentials:
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise SipParseError(f"not Digest credentials: {scheme!r}")
    try:
        credentials = DigestCredentials(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=params.get("algorithm", "MD5"),
            qop=params.get("qop"),
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
        )
    except KeyError as exc:
        raise SipParseError(f"Digest credentials without {exc.args[0]}") from None
    if credentials.qop is not None and (credentials.nc is None or credentials.cnonce is None):
        raise SipParseError("Digest credentials with qop but without nc or cnonce")
    return credentials


def build_credentials(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> DigestCredentials:
    """Answer a challenge (client side): qop=auth when offered, legacy digest otherwise."""
    _hash_function(challenge.algorithm)
    qop = "auth" if "auth" in challenge.qop else None
    if qop is not None or challenge.algorithm.upper().endswith("-SESS"):
        cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}" if qop is not None else None
    ha1 = compute_ha1(username, challenge.realm, password, challenge.algorithm)
    response = compute_response(
        ha1,
        algorithm=challenge.algorithm,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        opaque=challenge.opaque,
    )


# User-Agent prefixes of clients that give up when any challenge names an algorithm
# they do not know, instead of answering the one they do (RFC 8760 §2.4): libre
# before 3.0, under baresip 1.x/2.x (Debian 12 ships 1.0), fails the request with
# ENOSYS on a SHA-256 challenge even when an MD5 one is beside it.
ONE_CHALLENGE_AGENTS = ("baresip v0.", "baresip v1.", "baresip v2.")


def reads_one_challenge(user_agent: str) -> bool:
    return user_agent.lower().startswith(ONE_CHALLENGE_AGENTS)


class DigestVerdict(Enum):
    OK = "ok"
    # Correct response to a nonce that has expired: challenge again with stale=true.
    STALE = "stale"
    # Wrong password, forged or foreign nonce, or wrong realm: challenge afresh.
    INVALID = "invalid"


class DigestServer:
    """Issues challenges and verifies credentials for one realm."""

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        allow_legacy: bool = False,
    ) -> None:
        for algorithm in algorithms:
            _hash_function(algorithm)
        self.realm = realm
        self.algorithms = algorithms
        self.nonce_lifetime = nonce_lifetime
        self.allow_legacy = allow_legacy
        self._secret = secret

    def _sign(self, timestamp: str, salt: str) -> str:
        message = f"{timestamp}:{salt}:{self.realm}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def make_nonce(self, now: float) -> str:
        timestamp = f"{int(now):x}"
        salt = secrets.token_hex(6)
        return f"{timestamp}.{salt}.{self._sign(timestamp, salt)}"

    def nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since this server signed ``nonce``; None if it did not sign it."""
        parts = nonce.split(".")
        if len(parts) != 3:
            return None
        timestamp, salt, mac = parts
        if not hmac.compare_digest(mac.encode(), self._sign(timestamp, salt).encode()):
            return None
        age = now - int(timestamp, 16)
        return age if age >= -_CLOCK_SKEW else None

    def challenges(
        self, now: float, *, stale: bool = False, user_agent: str = ""
    ) -> list[DigestChallenge]:
        """One challenge per algorithm, most preferred first (RFC 8760 §2.4).

        A client known to abort on an algorithm it does not know gets only the first.
        """
        nonce = self.make_nonce(now)
        algorithms = self.algorithms
        if reads_one_challenge(user_agent):
            algorithms = algorithms[:1]
        return [
            DigestChallenge(self.realm, nonce, algorithm, ("auth",), stale=stale)
            for algorithm in algorithms
        ]

    def verify(
        self,
        credentials: DigestCredentials,
        *,
        method: str,
        now: float,
        password: str | None = None,
        ha1: str | None = None,
    ) -> DigestVerdict:
        """Check credentials against a password or a stored HA1 (for their algorithm).

        Whether ``credentials.uri`` names the Request-URI is left to the caller,
        which knows about the rewriting proxies in the path.
        """
        algorithm = credentials.algorithm.upper()
        if algorithm.removesuffix("-SESS") not in (a.upper() for a in self.algorithms):
            return DigestVerdict.INVALID
        if not hmac.compare_digest(credentials.realm.encode(), self.realm.encode()):
            return DigestVerdict.INVALID
        if credentials.qop is None and not self.allow_legacy:
            return DigestVerdict.INVALID
        if credentials.qop not in (None, "auth"):
            return DigestVerdict.INVALID
        age = self.nonce_age(credentials.nonce, now)
        if age is None:
            return DigestVerdict.INVALID
        if ha1 is None:
            if password is None:
                raise TypeError("verify() needs a password or an HA1")
            ha1 = compute_ha1(credentials.username, self.realm, password, algorithm)
        try:
            expected = compute_response(
                ha1,
                algorithm=algorithm,
                method=method,
                uri=credentials.uri,
                nonce=credentials.nonce,
                qop=credentials.qop,
                nc=credentials.nc,
                cnonce=credentials.cnonce,
            )
        except SipParseError:
            return DigestVerdict.INVALID
        if not hmac.compare_digest(expected.encode(), credentials.response.lower().encode()):
            return DigestVerdict.INVALID
        return DigestVerdict.STALE if age > self.nonce_lifetime else DigestVerdict.OK
