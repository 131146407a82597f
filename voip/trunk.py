"""The carrier SIP trunk: registration with digest auth, and outbound calls through it.

Outbound calls leave through the call core like any fork, with three differences
the :class:`voip.routing.Forward` carries: the From user is the department's caller
ID, the media is anchored through :mod:`voip.rtp_relay` (the carrier sees the
relay, never a phone), and the CDR says ``outbound``. The call core builds fresh
headers for the carrier's leg (Via, Contact, Call-ID of the exchange's own), so no
phone's Via, Contact or Call-ID reaches the carrier either.

The registration is this module's own client transactions: :class:`TrunkTransactions`
sits in front of the server's transaction user and takes the responses and
timeouts of the transactions the trunk started.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from voip.models import Disposition
from voip.sip.digest import build_credentials, parse_challenge
from voip.sip.errors import SipParseError
from voip.sip.headers import Headers
from voip.sip.ids import new_branch, new_call_id, new_tag
from voip.sip.message import Request, Response, Via
from voip.sip.transaction import ClientTransaction, InviteServerTransaction, ServerTransaction
from voip.sip.transaction_layer import Transaction
from voip.sip.uri import parse_uri

from .accounts import Account
from .dialplan import ToPstn
from .endpoint import SipEndpoint, TransactionUser
from .plan_store import Policy
from .routing import Forward, Refusal, Route, pseudo_account
from .rtp_relay import RtpRelay
from .transport.base import Flow

log = structlog.get_logger("voip.trunk")

RETRY_SECONDS = 30.0
REGISTER_SECONDS = 10.0


class TrunkTransactions:
    """A transaction user in front of the server's: the trunk's own transactions first."""

    def __init__(self, inner: TransactionUser) -> None:
        self.inner = inner
        self.owned: dict[int, Callable[[Response | None], None]] = {}

    def on_request(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        self.inner.on_request(request, transaction, flow)

    def on_ack(self, request: Request, flow: Flow) -> None:
        self.inner.on_ack(request, flow)

    def on_cancel(self, invite: InviteServerTransaction, cancel: Request) -> None:
        self.inner.on_cancel(invite, cancel)

    def on_response(self, response: Response, transaction: ClientTransaction) -> None:
        handler = self.owned.get(id(transaction))
        if handler is None:
            self.inner.on_response(response, transaction)
        elif response.status >= 200:
            del self.owned[id(transaction)]
            handler(response)

    def on_timeout(self, transaction: Transaction) -> None:
        handler = self.owned.pop(id(transaction), None)
        if handler is None:
            self.inner.on_timeout(transaction)
        else:
            handler(None)


class CarrierTrunk:
    def __init__(
        self,
        endpoint: SipEndpoint,
        transactions: TrunkTransactions,
        relay: RtpRelay,
        *,
        host: str,
        port: int,
        domain: str,
        username: str,
        password: str,
        register: bool,
        expires: int,
        public_host: str,
        default_caller_id: str,
    ) -> None:
        self.endpoint = endpoint
        self.transactions = transactions
        self.relay = relay
        self.flow = Flow("UDP", host, port)
        self.domain = domain or host
        self.username = username
        self.password = password
        self.register_enabled = register
        self.expires = expires
        self.public_host = public_host
        self.default_caller_id = default_caller_id or username
        self.registered = False
        self.last_status: int | None = None
        self._call_id = new_call_id()
        self._tag = new_tag()
        self._cseq = 0

    # -- outbound calls -------------------------------------------------------------------

    async def forward(
        self, caller: Account, pstn: ToPstn, request: Request, policy: Policy | None
    ) -> Route:
        if self.register_enabled and not self.registered:
            log.info("trunk.not_registered", caller=caller.number, number=pstn.number)
            return Refusal(503, Disposition.FAILED, "Service Unavailable (trunk down)")
        relayed = await self.relay.open()
        caller_id = (policy.caller_id if policy else "") or self.default_caller_id
        log.info(
            "trunk.outbound",
            caller=caller.number,
            number=pstn.number,
            destination=pstn.destination.value,
            caller_id=caller_id,
        )
        return Forward(
            callee=pseudo_account(pstn.number, pstn.destination.value),
            targets=[(f"sip:{pstn.number}@{self.domain}", self.flow)],
            direction="outbound",
            from_user=caller_id,
            rewrite_outward=relayed.rewrite_outward,
            rewrite_inward=relayed.rewrite_inward,
            on_call_end=[lambda: self.relay.close(relayed)],
        )

    # -- registration ---------------------------------------------------------------------

    def _register_request(self, expires: int, authorization: str | None = None) -> Request:
        self._cseq += 1
        port = self.endpoint.ports.get("UDP", 5060)
        aor = f"sip:{self.username}@{self.domain}"
        headers = Headers()
        # Our public face: the carrier learns nothing of the inside network.
        via = Via("UDP", self.public_host, port, {"branch": new_branch(), "rport": None})
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{aor}>;tag={self._tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<sip:{self.username}@{self.public_host}:{port}>")
        headers.add("Expires", str(expires))
        if authorization:
            headers.add("Authorization", authorization)
        return Request("REGISTER", parse_uri(f"sip:{self.domain}"), headers)

    async def _send(self, request: Request) -> Response | None:
        future: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()

        def done(response: Response | None) -> None:
            if not future.done():
                future.set_result(response)

        transaction = self.endpoint.send_request(request, self.flow)
        self.transactions.owned[id(transaction)] = done
        try:
            return await asyncio.wait_for(future, REGISTER_SECONDS * 4)
        except TimeoutError:
            self.transactions.owned.pop(id(transaction), None)
            return None

    async def register_once(self, expires: int) -> int:
        """One registration (answering a digest challenge); the granted seconds, 0 if not."""
        response = await self._send(self._register_request(expires))
        if response is not None and response.status in (401, 407):
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            try:
                challenge = parse_challenge(response.headers.get(header) or "")
            except SipParseError as error:
                log.warning("trunk.bad_challenge", error=str(error))
                return 0
            credentials = build_credentials(
                challenge,
                username=self.username,
                password=self.password,
                method="REGISTER",
                uri=f"sip:{self.domain}",
            )
            response = await self._send(self._register_request(expires, str(credentials)))
        self.last_status = response.status if response is not None else 408
        if response is None or not 200 <= response.status < 300:
            self.registered = False
            log.warning("trunk.register_failed", status=self.last_status, host=self.flow.host)
            return 0
        granted = expires
        with contextlib.suppress(ValueError, TypeError):
            granted = int(response.headers.get("Expires") or expires)
        self.registered = expires > 0
        log.info("trunk.registered", host=self.flow.host, expires=granted)
        return granted

    async def run(self) -> None:
        """Keep the trunk registered: refresh at 80% of the lifetime, retry when it fails."""
        if not self.register_enabled:
            return
        while True:
            try:
                granted = await self.register_once(self.expires)
            except Exception:
                log.exception("trunk.register_error")
                granted = 0
            await asyncio.sleep(max(granted * 0.8, 5.0) if granted else RETRY_SECONDS)

    async def unregister(self) -> None:
        if self.registered:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.register_once(0), 2.0)
