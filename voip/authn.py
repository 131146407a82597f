"""Digest authentication of REGISTER (401) and INVITE (407) against the directory.

Existing and unknown extensions get the same answers: always a challenge of the
same form first, then the same 403 for any wrong answer, so nothing can be
learnt about which numbers exist (sipvicious svwar) or which passwords are close.

A trusted peer (the carrier trunk) is known by where its INVITEs come from, not by
a password: :attr:`Authenticator.trusted_peers` are asked first when the caller's
flow is given, and the first that recognises the flow names the calling account.
A request that only claims to come from the peer (its From, its domain) from
anywhere else is challenged like any stranger's.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from voip.sip.digest import DigestServer, DigestVerdict, parse_credentials
from voip.sip.errors import SipParseError
from voip.sip.message import Request

from .accounts import Account, Accounts
from .protection import Protection
from .transport.base import Flow

log = structlog.get_logger("voip.authn")


# Recognises a request by the flow it came on: the calling account, or None (a stranger).
TrustedPeer = Callable[[Request, Flow], Account | None]


@dataclass(frozen=True, slots=True)
class Challenge:
    """Answer the request with this status and headers instead of serving it."""

    status: int
    headers: list[tuple[str, str]]


class Authenticator:
    def __init__(
        self, realm: str, secret: bytes, accounts: Accounts, protection: Protection
    ) -> None:
        self.realm = realm
        # MD5 first: many deployed phones (and SIPp) answer only the first challenge and
        # know no SHA-256; RFC 8760 clients that do still find the SHA-256 one after it.
        self.digest = DigestServer(realm, secret, algorithms=("MD5", "SHA-256"))
        self._accounts = accounts
        self._protection = protection
        self._decoy_key = hashlib.sha256(b"decoy:" + secret).digest()
        # Peers identified by their address instead of a password (the carrier trunk).
        self.trusted_peers: list[TrustedPeer] = []

    def _decoy(self, username: str, algorithm: str) -> str:
        # A stable wrong HA1 for numbers that do not exist: the verification runs the
        # same code and takes the same time as for a real extension.
        mac = hmac.new(self._decoy_key, username.encode(), hashlib.sha256).hexdigest()
        return mac[:32] if algorithm.upper().startswith("MD5") else mac

    def challenge(self, *, proxy: bool, stale: bool = False, user_agent: str = "") -> Challenge:
        status = 407 if proxy else 401
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        challenges = self.digest.challenges(time.time(), stale=stale, user_agent=user_agent)
        return Challenge(status, [(name, str(c)) for c in challenges])

    async def check(
        self,
        request: Request,
        source: str,
        *,
        proxy: bool,
        user_hint: str,
        flow: Flow | None = None,
    ) -> Account | Challenge:
        """The authenticated account, or how to answer instead.

        With ``flow`` (where the request came from, transport and port included) a
        trusted peer that recognises it is answered without a challenge.
        """
        if flow is not None:
            for peer in self.trusted_peers:
                account = peer(request, flow)
                if account is not None:
                    return account
        header = "Proxy-Authorization" if proxy else "Authorization"
        user_agent = request.headers.get("User-Agent") or ""
        credentials = None
        for value in request.headers.get_all(header):
            try:
                parsed = parse_credentials(value)
            except SipParseError:
                continue
            if parsed.realm == self.realm:
                credentials = parsed
                break
        if credentials is None:
            self._protection.challenged(source, user_hint)
            return self.challenge(proxy=proxy, user_agent=user_agent)
        username = credentials.username
        if self._protection.extension_locked(username) and not self._protection.is_trusted(source):
            return Challenge(403, [])
        account = await self._accounts.get(username)
        ha1 = account.ha1(credentials.algorithm) if account is not None else None
        verdict = self.digest.verify(
            credentials,
            method=request.method,
            now=time.time(),
            ha1=ha1 or self._decoy(username, credentials.algorithm),
        )
        if verdict is DigestVerdict.OK and account is not None and account.enabled:
            self._protection.authenticated(source)
            return account
        if verdict is DigestVerdict.STALE:
            return self.challenge(proxy=proxy, stale=True, user_agent=user_agent)
        await self._protection.failed(source, username)
        return Challenge(403, [])
