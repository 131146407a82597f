"""The carrier SIP trunk: registration with digest auth, outbound and inbound calls.

Outbound calls leave through the call core like any fork, with four differences
the :class:`voip.routing.Forward` carries: the From user is the department's caller
ID, the media is anchored through :mod:`voip.rtp_relay` (the carrier sees the
relay, never a phone), a 401/407 from the carrier is answered with the trunk's
credentials (:meth:`CarrierTrunk.authorize`: the INVITE again, CSeq + 1), and the
CDR says ``outbound``. The call core builds fresh headers for the carrier's leg
(Via, Contact, Call-ID of the exchange's own), so no phone's Via, Contact or
Call-ID reaches the carrier either.

Inbound calls: the carrier is a trusted peer, known by the address and port of the
trunk settings (:meth:`CarrierTrunk.caller_of`, the authenticator's hook), never
by a password; the same INVITE from anywhere else is challenged like a stranger's.
:class:`InboundRouter` sits in front of the exchange's router and sends the
carrier's calls by the DID table (:mod:`voip.did`) to an extension (with its
forwarding and voicemail), a ring group or an IVR menu; an unknown DID is 404.
Their media is anchored the other way round: the phone sees the relay's inside
address, the carrier its outside one, at every step (next ring-group member,
voicemail, the IVR's transfer).

The registration is this module's own client transactions: :class:`TrunkTransactions`
sits in front of the server's transaction user and takes the responses and
timeouts of the transactions the trunk started.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable
from dataclasses import replace

import structlog

from voip.models import ClassOfService, Disposition
from voip.sip.digest import (
    DigestChallenge,
    DigestCredentials,
    build_credentials,
    parse_challenge,
    parse_credentials,
)
from voip.sip.errors import SipParseError
from voip.sip.headers import Headers
from voip.sip.ids import new_branch, new_call_id, new_tag
from voip.sip.message import Request, Response, Via
from voip.sip.transaction import ClientTransaction, InviteServerTransaction, ServerTransaction
from voip.sip.transaction_layer import Transaction
from voip.sip.uri import SipUri, parse_uri

from .accounts import Account, Accounts
from .dialplan import ToPstn
from .did import DidKind, DidTable
from .endpoint import SipEndpoint, TransactionUser
from .location import Location
from .plan_store import Policy
from .routing import CallRouter, Forward, Refusal, Route, pseudo_account
from .rtp_relay import RelayedCall, RtpRelay
from .transport.base import Flow

log = structlog.get_logger("voip.trunk")

RETRY_SECONDS = 30.0
REGISTER_SECONDS = 10.0
# The account id of a call from the carrier (no extension has it: ids start at 1).
CARRIER_ACCOUNT_ID = -1
# What a carrier's caller ID may be to reach our From headers and the CDR.
_CALLER_ID = re.compile(r"^\+?[0-9A-Za-z*#._-]{1,32}$")
# INVITEs answered with credentials per call: a carrier refusing them is not asked forever.
_MAX_AUTHORIZED_CSEQ = 3


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
        # The carrier's addresses (its host resolved): INVITEs from these, on its port, are
        # the carrier's own. resolve() fills in the names; an IP is known from the start.
        self.peer_hosts: set[str] = {host}
        self._show_public_face()
        self._call_id = new_call_id()
        self._tag = new_tag()
        self._cseq = 0

    async def resolve(self) -> None:
        """Learn the addresses of a trunk host given by name (the carrier's own DNS)."""
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(self.flow.host, self.flow.port, type=socket.SOCK_DGRAM)
        except OSError as error:
            log.warning("trunk.unresolved", host=self.flow.host, error=str(error))
            return
        self.peer_hosts |= {str(info[4][0]) for info in found}
        self._show_public_face()

    def _show_public_face(self) -> None:
        """The carrier sees our public host in every Via and Contact of its calls too."""
        if self.public_host and self.public_host != self.endpoint.advertised_host:
            for host in self.peer_hosts:
                self.endpoint.faces[(host, self.flow.port)] = self.public_host

    # -- inbound calls --------------------------------------------------------------------

    def caller_of(self, request: Request, flow: Flow) -> Account | None:
        """The authenticator's trusted-peer hook: the carrier's INVITE, or None.

        Only the trunk's own address and port over UDP count: the carrier's From or
        domain in a request from anywhere else proves nothing (it is challenged).
        """
        if (
            request.method != "INVITE"
            or flow.transport != "UDP"
            or flow.port != self.flow.port
            or flow.host not in self.peer_hosts
        ):
            return None
        address = request.from_
        user = address.uri.user if isinstance(address.uri, SipUri) else None
        number = user if user and _CALLER_ID.match(user) else "anonymous"
        name = (address.display_name or "").strip()[:64]
        return Account(
            CARRIER_ACCOUNT_ID, number, name, None, "", "", True, ClassOfService.INTERNAL
        )

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
            authorize=self.authorize,
        )

    def authorize(self, invite: Request, response: Response) -> Request | None:
        """The carrier challenged our INVITE: the same INVITE with credentials, CSeq + 1.

        None when it refused the credentials already given (a stale nonce excepted).
        """
        proxy = response.status == 407
        challenge_header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        answer_header = "Proxy-Authorization" if proxy else "Authorization"
        challenge = _first_usable(response.headers.get_all(challenge_header))
        if challenge is None:
            log.warning("trunk.bad_invite_challenge", status=response.status)
            return None
        given = [
            credentials
            for value in invite.headers.get_all(answer_header)
            if (credentials := _credentials(value)) is not None
            and credentials.realm == challenge.realm
        ]
        cseq = invite.cseq.number + 1
        if (given and not challenge.stale) or cseq > _MAX_AUTHORIZED_CSEQ:
            log.warning("trunk.invite_refused", status=response.status, realm=challenge.realm)
            return None
        credentials = build_credentials(
            challenge,
            username=self.username,
            password=self.password,
            method="INVITE",
            uri=str(invite.uri),
        )
        headers = invite.headers.copy()
        headers.set("Via", str(self.endpoint.via(self.flow)))  # a new transaction
        headers.set("CSeq", f"{cseq} INVITE")
        headers.remove(answer_header)
        headers.add(answer_header, str(credentials))
        log.info("trunk.invite_authorized", status=response.status, realm=challenge.realm)
        return Request("INVITE", invite.uri, headers, invite.body)

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


def _first_usable(values: list[str]) -> DigestChallenge | None:
    """The first challenge we can answer (an unknown algorithm's is skipped)."""
    for value in values:
        try:
            challenge = parse_challenge(value)
            build_credentials(challenge, username="", password="", method="INVITE", uri="sip:x")
        except SipParseError:
            continue
        return challenge
    return None


def _credentials(value: str) -> DigestCredentials | None:
    try:
        return parse_credentials(value)
    except SipParseError:
        return None


class InboundRouter:
    """The call core's router with the carrier's calls in front: DID -> where it rings.

    Everyone else's calls go to ``inner`` (the features' router) unchanged.
    """

    def __init__(
        self,
        inner: CallRouter,
        trunk: CarrierTrunk,
        dids: DidTable,
        accounts: Accounts,
        location: Location,
        *,
        instance: str,
        groups: Callable[[str], object | None],
        menus: Callable[[str], object | None],
    ) -> None:
        self.inner = inner
        self.trunk = trunk
        self.dids = dids
        self.accounts = accounts
        self.location = location
        self.instance = instance
        self.groups = groups
        self.menus = menus

    async def route(self, caller: Account, number: str, request: Request) -> Route:
        if caller.id != CARRIER_ACCOUNT_ID:
            return await self.inner.route(caller, number, request)
        route = await self._inbound(caller, number, request)
        if isinstance(route, Refusal):
            # A call from outside refused (unknown DID, nobody there): an inbound record too.
            return replace(route, direction="inbound")
        return route

    async def _inbound(self, caller: Account, number: str, request: Request) -> Route:
        to = request.to.uri
        entry = self.dids.lookup([number, to.user if isinstance(to, SipUri) else None])
        if entry is None:
            log.info("trunk.inbound_unknown", caller=caller.number, number=number)
            return Refusal(404, Disposition.NOT_FOUND, "Not Found (no such number)")
        log.info(
            "trunk.inbound",
            caller=caller.number,
            did=entry.did,
            kind=entry.kind.value,
            target=entry.target,
        )
        route = await self._target(caller, entry.kind, entry.target, request)
        if not isinstance(route, Forward):
            return route if isinstance(route, Refusal) else _unreachable(404)
        if not route.targets:
            return _unreachable(480)
        relayed = await self.trunk.relay.open()
        relay = self.trunk.relay
        route.on_call_end.append(lambda: relay.close(relayed))
        return _anchored(route, relayed)

    async def _target(self, caller: Account, kind: DidKind, target: str, request: Request) -> Route:
        if kind is DidKind.RING_GROUP and self.groups(target) is None:
            return _unreachable(404)
        if kind is DidKind.IVR and self.menus(target) is None:
            return _unreachable(404)
        if kind is not DidKind.EXTENSION:
            return await self.inner.route(caller, target, request)
        callee = await self.accounts.get(target)
        if callee is None or not callee.enabled:
            return _unreachable(404)
        # The extension's own settings (DND, forwarding, voicemail) apply as to any caller.
        route = await self.inner.route(caller, target, request)
        if route is not None:
            return route
        contacts = await self.location.lookup(callee.number)
        targets = [(c.uri, flow) for c in contacts if (flow := c.flow(self.instance))]
        return Forward(callee=callee, targets=targets) if targets else _unreachable(480)


def _unreachable(status: int) -> Refusal:
    if status == 480:
        return Refusal(480, Disposition.UNAVAILABLE)
    return Refusal(404, Disposition.NOT_FOUND, "Not Found (the number leads nowhere)")


def _then(
    first: Callable[[bytes], bytes] | None, second: Callable[[bytes], bytes] | None
) -> Callable[[bytes], bytes] | None:
    if first is None or second is None:
        return first or second

    def both(body: bytes) -> bytes:
        return second(first(body))

    return both


def _anchored(route: Route, relayed: RelayedCall) -> Route:
    """A route of a carrier's call with its media through ``relayed``, next steps included.

    Towards the targets (phones, workers) the carrier's SDP names the relay's inside;
    back to the carrier theirs names its outside. A route anchored already (forwarded
    out through the trunk again) keeps its own relay behind ours.
    """
    if not isinstance(route, Forward):
        return route
    route.rewrite_outward = _then(relayed.rewrite_inward, route.rewrite_outward)
    route.rewrite_inward = _then(route.rewrite_inward, relayed.rewrite_outward)
    if route.direction == "internal":
        route.direction = "inbound"
    ask = route.next_step
    if ask is not None:

        async def next_step(status: int) -> Route:
            return _anchored(await ask(status), relayed)

        route.next_step = next_step
    return route
