"""The call core: a back-to-back user agent between two extensions.

The caller's INVITE ends here (leg A, we are its UAS); a new INVITE goes to every
registered contact of the callee at once (legs B, we are their UAC). SDP passes
through unchanged, so media flows phone to phone. The first 2xx wins; the other
forks are cancelled. In-dialog requests (BYE, re-INVITE for hold, UPDATE, INFO)
are relayed to the other leg; a BYE from either side ends both. A REFER from the
callee's side (a phone's blind or attended transfer, an IVR sending its caller on)
moves the caller to the target (see ``_refer``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from voip.models import Disposition
from voip.sip.ack_wait import AckTimeout, AckWait
from voip.sip.dialog import Dialog
from voip.sip.errors import SipParseError
from voip.sip.headers import Headers, quote
from voip.sip.ids import new_call_id, new_tag
from voip.sip.message import Request, Response
from voip.sip.refer import SIPFRAG, Replaces, notify_headers, parse_refer_to, sipfrag
from voip.sip.transaction import (
    ClientTransaction,
    InviteServerTransaction,
    SendMessage,
    ServerTransaction,
    build_cancel,
)
from voip.sip.transaction_layer import Transaction
from voip.sip.uri import SipUri, parse_uri

from .accounts import Account, Accounts
from .authn import Authenticator, Challenge
from .calls import LiveCalls
from .cdr import CdrWriter
from .endpoint import SipEndpoint
from .location import Location
from .routing import CallRouter, Detour, Forward, Pickup, Refusal
from .transport.base import Flow

log = structlog.get_logger("voip.b2bua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY"
DEFAULT_MAX_FORWARDS = 70


@dataclass(eq=False)
class Leg:
    side: str  # "a" (caller) or "b" (a fork towards the callee)
    flow: Flow
    call_id: str
    dialog: Dialog | None = None
    invite: Request | None = None
    transaction: ClientTransaction | None = None
    provisional: bool = False
    cancel_wanted: bool = False
    final: int | None = None
    ack: Request | None = None
    # A fork of an earlier step (forwarded, voicemail, next ring-group member): its late
    # failure or answer no longer speaks for the call.
    stale: bool = False
    # Our 2xx to an INVITE on this leg (the caller's, a picker's, a re-INVITE's) goes
    # again until its ACK comes (UDP, see _await_ack).
    ack_wait: AckWait | None = None
    retransmit: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class Call:
    caller: Account
    callee: Account
    a: Leg
    a_invite: Request
    a_transaction: InviteServerTransaction
    a_tag: str
    b_tag: str
    started: float
    started_at: dt.datetime
    forks: list[Leg] = field(default_factory=list)
    answered: Leg | None = None
    answered_at: dt.datetime | None = None
    state: str = "ringing"
    best: Response | None = None
    ring_timer: asyncio.TimerHandle | None = None
    late_offer: bool = False
    route: Forward | None = None  # set when a CallRouter chose the targets
    # The callee as dialled; ``callee`` follows forwarding and ring groups.
    dialled: Account | None = None
    transfer: _Transfer | None = None  # a REFER being carried out

    @property
    def id(self) -> str:
        return self.a.call_id

    def other(self, leg: Leg) -> Leg | None:
        return self.answered if leg is self.a else self.a


@dataclass
class _Relay:
    """A request we forwarded on the other leg, and the transaction to answer."""

    call: Call
    origin: ServerTransaction
    origin_leg: Leg
    target: Leg
    after: Callable[[int], None] | None = None  # a feature's Detour, told the final status


@dataclass(eq=False)
class _Transfer:
    """A transfer by REFER from the callee's side, in progress.

    Blind: the target is called without an offer, so its 200 carries one; the caller
    is re-INVITEd with that offer and its answer goes back in the target's ACK.
    Attended (Replaces): the consultation call's callee is re-INVITEd without an
    offer instead, the rest the same. Only then is the transferor let go: a target
    that fails leaves the call as it was.
    """

    call: Call
    transferor: Leg
    target: Account | None = None
    leg: Leg | None = None  # our INVITE towards the target
    reinvite: ClientTransaction | None = None  # the caller's re-INVITE with the target's offer
    transferor_gone: bool = False  # it hung up after the 202, as many phones do
    timer: asyncio.TimerHandle | None = None
    # Attended (Replaces): the transferor's consultation call, whose callee takes its place;
    # that leg is re-INVITEd, not called, and is not ours to hang up if the transfer fails.
    replaced: Call | None = None
    owned: bool = True
    target_cseq: int = 1  # of the INVITE (or re-INVITE) whose 2xx brought the target's offer


@dataclass(frozen=True)
class _LateAck:
    """A re-INVITE without SDP was answered with an offer (RFC 3261 §14.1, §13.2.1).

    The answer comes in the origin's ACK, so the target's ACK waits for it.
    """

    target: Leg
    cseq: int
    call: Call | None = None  # for the anchor of a relayed call's answer


def _rank(status: int) -> int:
    """Which fork's failure the caller hears (RFC 3261 §16.7 step 6, simplified)."""
    if status in (486, 600, 603):
        return 0
    if status == 487:
        return 5
    if status in (408, 480):
        return 3
    return {4: 1, 5: 2, 3: 4}.get(status // 100, 6)


def _disposition(status: int) -> Disposition:
    if status in (486, 600):
        return Disposition.BUSY
    if status in (403, 603):
        return Disposition.REJECTED
    if status in (404, 604):
        return Disposition.NOT_FOUND
    if status == 480:
        return Disposition.UNAVAILABLE
    if status == 408:
        return Disposition.NO_ANSWER
    if status == 487:
        return Disposition.CANCELLED
    return Disposition.FAILED


class B2bua:
    def __init__(
        self,
        endpoint: SipEndpoint,
        authenticator: Authenticator,
        accounts: Accounts,
        location: Location,
        cdr: CdrWriter,
        live: LiveCalls,
        *,
        realm: str,
        node: str,
        instance: str,
        ring_timeout: float,
        registry: CollectorRegistry,
    ) -> None:
        self._endpoint = endpoint
        self._auth = authenticator
        self._accounts = accounts
        self._location = location
        self._cdr = cdr
        self._live = live
        self.realm = realm
        self.node = node
        self.instance = instance
        self.ring_timeout = ring_timeout
        # Consulted before extension routing (features, trunk, class of service).
        self.router: CallRouter | None = None
        # Told when a call starts ringing, is answered and ends (busy lamps, ring groups).
        self.watchers: list[Callable[[Call], None]] = []
        # Asked about an in-dialog INVITE before it is relayed (hold music): None relays it.
        self.in_dialog_hook: Callable[[Call, Leg, Request], Detour | None] | None = None
        self._next_steps: set[asyncio.Task[None]] = set()
        self._legs: dict[str, tuple[Call, Leg]] = {}
        self._invites: dict[int, Call] = {}
        self._client: dict[
            int, tuple[Call, Leg] | _Relay | _Transfer | Callable[[Response | None], None]
        ] = {}
        # (origin Call-ID, origin CSeq) of re-INVITEs whose ACK carries the SDP answer.
        self._late_acks: dict[tuple[str, int], _LateAck] = {}
        self._loop = asyncio.get_running_loop()
        self.calls_total = Counter(
            "unicomm_sip_calls", "Calls ended, by disposition", ["disposition"], registry=registry
        )
        self.active = Gauge("unicomm_sip_active_calls", "Calls in progress", registry=registry)

    @property
    def active_calls(self) -> int:
        return len(self._invites)

    # -- new calls --------------------------------------------------------------

    async def invite(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        assert isinstance(transaction, InviteServerTransaction)
        reply = self._endpoint.reply
        max_forwards = request.max_forwards
        if max_forwards is None:
            max_forwards = DEFAULT_MAX_FORWARDS
        if max_forwards <= 0:
            reply(transaction, 483)
            return
        if self._looped(request):
            reply(transaction, 482)
            return
        from_uri = request.from_.uri
        hint = from_uri.user or "" if isinstance(from_uri, SipUri) else ""
        checked = await self._auth.check(request, flow.host, proxy=True, user_hint=hint, flow=flow)
        if isinstance(checked, Challenge):
            reply(transaction, checked.status, headers=checked.headers)
            return
        caller = checked
        if not request.contacts:
            reply(transaction, 400, reason="Bad Request (no Contact)")
            return
        target = request.uri
        number = target.user if isinstance(target, SipUri) else None
        route = await self.router.route(caller, number or "", request) if self.router else None
        if isinstance(route, Pickup):
            self._pick_up(request, transaction, flow, caller, route)
            return
        if isinstance(route, Refusal):
            log.info("sip.call_refused", caller=caller.number, callee=number, status=route.status)
            reply(transaction, route.status, reason=route.reason)
            self._record_unrouted(
                request,
                caller,
                number or "",
                route.status,
                route.disposition,
                direction=route.direction,
            )
            return
        callee: Account | None
        if route is not None:
            callee = route.callee
        else:
            callee = await self._accounts.get(number) if number else None
        if callee is None or not callee.enabled:
            log.info("sip.call_refused", caller=caller.number, callee=number, status=404)
            reply(transaction, 404)
            self._record_unrouted(request, caller, number or "", 404, Disposition.NOT_FOUND)
            return
        if route is not None:
            reachable = route.targets
        else:
            contacts = await self._location.lookup(callee.number)
            flows = [(c.uri, c.flow(self.instance)) for c in contacts]
            reachable = [(uri, f) for uri, f in flows if f is not None]
        if not reachable:
            log.info("sip.call_refused", caller=caller.number, callee=callee.number, status=480)
            reply(transaction, 480)
            self._record_unrouted(
                request, caller, callee.number, 480, Disposition.UNAVAILABLE, callee
            )
            return
        if transaction.terminated or transaction.state.value != "proceeding":
            return  # the caller cancelled while we looked things up
        call = Call(
            caller=caller,
            callee=callee,
            a=Leg("a", flow, request.call_id),
            a_invite=request,
            a_transaction=transaction,
            a_tag=new_tag(),
            b_tag=new_tag(),
            started=time.monotonic(),
            started_at=dt.datetime.now(dt.UTC),
            late_offer=not request.body,
            route=route,
        )
        self._legs[call.id] = (call, call.a)
        self._invites[id(transaction)] = call
        self.active.inc()
        self._live.put(call.id, self._live_record(call))
        log.info(
            "sip.call_started",
            call_id=call.id,
            caller=caller.number,
            callee=callee.number,
            forks=len(reachable),
        )
        call.dialled = callee
        for uri, fork_flow in reachable:
            self._fork(call, uri, fork_flow, max_forwards - 1)
        ring_seconds = route.ring_seconds if route is not None else None
        call.ring_timer = self._loop.call_later(
            ring_seconds or self.ring_timeout, self._ring_timeout, call
        )
        self._tell(call)

    def _looped(self, request: Request) -> bool:
        vias = request.headers.get_list("Via")
        if len(vias) < 2:
            return False
        ours = {
            f"{self._endpoint.advertised_host}:{port}" for port in self._endpoint.ports.values()
        }
        try:
            return any(via.sent_by in ours for via in request.vias[1:])
        except SipParseError:
            return False

    def _fork(self, call: Call, uri_text: str, flow: Flow, max_forwards: int) -> None:
        try:
            uri = parse_uri(uri_text)
        except SipParseError:
            return
        a = call.a_invite
        headers = Headers()
        headers.add("Via", str(self._endpoint.via(flow)))
        headers.add("Max-Forwards", str(max_forwards))
        display = quote(call.caller.name) + " " if call.caller.name else ""
        from_user = call.caller.number
        body = a.body
        if call.route is not None:
            # Towards a trunk: the department's caller ID, an SDP that names our relay.
            from_user = call.route.from_user or from_user
            if call.route.from_user:
                display = ""
            body = self._anchored(call, body, towards_caller=False)
        headers.add("From", f"{display}<sip:{from_user}@{self.realm}>;tag={call.b_tag}")
        headers.add("To", f"<sip:{call.callee.number}@{self.realm}>")
        call_id = new_call_id()
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 INVITE")
        contact = self._endpoint.local_uri(from_user, flow)
        headers.add("Contact", f"<{contact}>")
        headers.add("Allow", ALLOW)
        content_type = a.headers.get("Content-Type")
        if content_type:
            headers.add("Content-Type", content_type)
        invite = Request("INVITE", uri, headers, body)
        leg = Leg("b", flow, call_id, invite=invite)
        call.forks.append(leg)
        self._legs[call_id] = (call, leg)
        leg.transaction = self._endpoint.send_request(invite, flow)
        self._client[id(leg.transaction)] = (call, leg)

    def _pick_up(
        self,
        request: Request,
        transaction: InviteServerTransaction,
        flow: Flow,
        picker: Account,
        pickup: Pickup,
    ) -> None:
        """Group pickup: the picker's INVITE answers a call ringing elsewhere.

        The ringing forks are cancelled (their late answers hang up as any losing fork's
        do), the picker gets a 200 with the caller's session description and the caller
        a 200 with the picker's: ``pickup`` carries both, each cut to the other's codecs.
        """
        entry = self._legs.get(pickup.call_id)
        call = entry[0] if entry is not None else None
        if call is None or call.state != "ringing" or call.caller.number == picker.number:
            self._endpoint.reply(transaction, 480, reason="Temporarily Unavailable (answered)")
            return
        if transaction.terminated or transaction.state.value != "proceeding":
            return
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        if call.route is not None:
            call.route.next_step = None
        for fork in call.forks:
            fork.stale = True
            if fork.final is None:
                self._cancel_fork(fork)
        response = request.response(200, to_tag=new_tag())
        contact = self._endpoint.local_uri(call.caller.number, flow)
        response.headers.add("Contact", f"<{contact}>")
        response.headers.add("Allow", ALLOW)
        response.headers.add("Content-Type", "application/sdp")
        response.body = self._anchored(call, pickup.to_picker, towards_caller=False)
        self._endpoint.respond(transaction, response)
        leg = Leg("b", flow, request.call_id)
        try:
            leg.dialog = Dialog.from_uas(request, response)
        except SipParseError:
            return
        self._legs[leg.call_id] = (call, leg)
        self._await_ack(call, leg, response)
        log.info("sip.picked_up", call_id=call.id, by=picker.number, ringing=call.callee.number)
        call.callee = picker
        self._connected(call, leg, None, pickup.to_caller)

    def _record_unrouted(
        self,
        request: Request,
        caller: Account,
        callee: str,
        status: int,
        disposition: Disposition,
        callee_account: Account | None = None,
        direction: str = "internal",
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        self.calls_total.labels(disposition.value).inc()
        self._cdr.add(
            call_id=request.call_id[:200],
            caller=caller.number,
            callee=callee[:64],
            caller_department_id=caller.department_id,
            callee_department_id=callee_account.department_id if callee_account else None,
            direction=direction,
            started_at=now,
            answered_at=None,
            ended_at=now,
            duration_seconds=0.0,
            disposition=disposition,
            hangup_side="system",
            sip_status=status,
            node=self.node,
        )

    # -- responses from the callee's phones ---------------------------------------

    def on_response(self, response: Response, transaction: ClientTransaction) -> None:
        entry = self._client.get(id(transaction))
        if entry is None:
            self._ack_again(response)
            return
        if callable(entry):  # a feature's own request (see expect())
            if response.status >= 200:
                self._client.pop(id(transaction), None)
            entry(response)
            return
        if isinstance(entry, _Relay):
            self._relay_response(entry, response, transaction)
            return
        if isinstance(entry, _Transfer):
            self._transfer_response(entry, response, transaction)
            return
        call, leg = entry
        status = response.status
        if status < 200:
            leg.provisional = True
            if leg.cancel_wanted or call.state != "ringing":
                self._cancel_fork(leg)
            elif status > 100:
                self._to_caller(call, status, response)
            return
        if status < 300:
            self._fork_answered(call, leg, response)
            return
        if status in (401, 407) and call.route is not None and call.route.authorize is not None:
            if self._authorize_fork(call, leg, transaction, response):
                return
            # The carrier's credentials are ours, not the caller's: no challenge for the phone.
            assert leg.invite is not None
            response = leg.invite.response(503, "Service Unavailable (trunk authentication)")
            status = 503
        leg.final = status
        self._client.pop(id(transaction), None)
        self._legs.pop(leg.call_id, None)
        if not leg.stale:
            self._fork_failed(call, response)

    def _authorize_fork(
        self, call: Call, leg: Leg, transaction: ClientTransaction, response: Response
    ) -> bool:
        """Send a challenged fork's INVITE again with the route's credentials (§22.2)."""
        route = call.route
        if route is None or route.authorize is None or leg.invite is None:
            return False
        if leg.stale or leg.cancel_wanted or call.state != "ringing":
            return False
        invite = route.authorize(leg.invite, response)
        if invite is None:
            return False
        self._client.pop(id(transaction), None)
        leg.invite = invite
        leg.provisional = False
        leg.transaction = self._endpoint.send_request(invite, leg.flow)
        self._client[id(leg.transaction)] = (call, leg)
        return True

    def on_timeout(self, transaction: Transaction) -> None:
        entry = self._client.pop(id(transaction), None)
        if entry is None:
            return
        if callable(entry):
            entry(None)
            return
        if isinstance(entry, _Relay):
            if not entry.origin.terminated:
                self._endpoint.reply(entry.origin, 408)
            if entry.after is not None:
                entry.after(408)
            return
        if isinstance(entry, _Transfer):
            self._transfer_failed(entry, 408)
            return
        call, leg = entry
        if leg.final is None and call.answered is not leg:
            leg.final = 408
            self._legs.pop(leg.call_id, None)
            self._fork_failed(call, None)

    def _to_caller(
        self, call: Call, status: int, source: Response | None, body: bytes = b""
    ) -> Response:
        """A response to the caller's INVITE carrying the callee's session description."""
        response = call.a_invite.response(
            status, source.reason if source else None, to_tag=call.a_tag
        )
        if status > 100 and status < 300:
            # Named as the caller dialled us (its To), as its dialog's later Contacts are: the
            # carrier sees its DID, never the extension or group member behind it.
            to = call.a_invite.to.uri
            user = to.user if isinstance(to, SipUri) and to.user else call.callee.number
            contact = self._endpoint.local_uri(user, call.a.flow)
            response.headers.add("Contact", f"<{contact}>")
            response.headers.add("Allow", ALLOW)
        if source is not None and source.body and status < 300:
            response.headers.add(
                "Content-Type", source.headers.get("Content-Type") or "application/sdp"
            )
            response.body = self._anchored(call, source.body, towards_caller=True)
        elif body and status < 300:  # a body of our making (group pickup)
            response.headers.add("Content-Type", "application/sdp")
            response.body = self._anchored(call, body, towards_caller=True)
        self._endpoint.respond(call.a_transaction, response)
        return response

    def _fork_answered(self, call: Call, leg: Leg, response: Response) -> None:
        assert leg.invite is not None
        if leg.dialog is None:
            try:
                leg.dialog = Dialog.from_uac(leg.invite, response)
            except SipParseError:
                leg.dialog = None
        if leg.dialog is None:
            return
        if leg.ack is None and not (
            call.late_offer and call.answered in (None, leg) and call.state == "ringing"
        ):
            # With an offer in the INVITE the ACK carries nothing: send it at once.
            # A late offer waits for the caller's ACK, which carries the answer.
            leg.ack = leg.dialog.create_ack(
                leg.invite.cseq.number, via=self._endpoint.via(leg.flow)
            )
        if leg.ack is not None:
            self._endpoint.send(leg.ack, leg.flow)
        if call.answered is leg:
            return  # a retransmitted 2xx: our ACK went again
        if call.state != "ringing" or call.answered is not None or leg.stale:
            # Another fork answered first, or the call is over: hang this one up.
            self._send_in_dialog(leg, "BYE")
            self._legs.pop(leg.call_id, None)
            return
        self._connected(call, leg, response)

    def _connected(
        self, call: Call, leg: Leg, response: Response | None, body: bytes = b""
    ) -> None:
        """``leg`` answered: the caller gets its 200 (``response``'s SDP, or ``body``)."""
        call.answered = leg
        call.state = "answered"
        call.answered_at = dt.datetime.now(dt.UTC)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for other in call.forks:
            if other is not leg and other.final is None:
                self._cancel_fork(other)
        answer = self._to_caller(call, 200, response, body)
        try:
            call.a.dialog = Dialog.from_uas(call.a_invite, answer)
        except SipParseError:
            call.a.dialog = None
        self._await_ack(call, call.a, answer)
        self._live.put(call.id, self._live_record(call))
        self._tell(call)
        log.info(
            "sip.call_answered",
            call_id=call.id,
            caller=call.caller.number,
            callee=call.callee.number,
        )

    def _await_ack(self, call: Call, leg: Leg, answer: Response) -> None:
        """Our 2xx to an INVITE or re-INVITE of ``leg`` goes again until its ACK (§13.3.1.4).

        Over UDP only (a stream delivers it), from T1 doubling up to T2; after 64*T1 without
        the ACK the call is ended with a BYE on both legs (``_no_ack``).
        """
        self._stop_waiting(leg)
        if leg.flow.reliable:
            return
        timers = self._endpoint.layer.timers
        leg.ack_wait = AckWait(answer, now=self._loop.time(), timers=timers)
        self._arm_ack_wait(call, leg)

    def _arm_ack_wait(self, call: Call, leg: Leg) -> None:
        due = leg.ack_wait.next_deadline() if leg.ack_wait is not None else None
        leg.retransmit = None if due is None else self._loop.call_at(due, self._ack_due, call, leg)

    def _ack_due(self, call: Call, leg: Leg) -> None:
        wait = leg.ack_wait
        if wait is None or call.state != "answered" or leg not in (call.a, call.answered):
            self._stop_waiting(leg)  # the call ended, or a transfer let this leg go
            return
        for event in wait.handle_timer(self._loop.time()):
            if isinstance(event, SendMessage):
                self._endpoint.send(event.message, leg.flow)
            elif isinstance(event, AckTimeout):
                self._stop_waiting(leg)
                self._no_ack(call, leg, wait)
                return
        self._arm_ack_wait(call, leg)

    @staticmethod
    def _stop_waiting(leg: Leg) -> None:
        if leg.retransmit is not None:
            leg.retransmit.cancel()
        leg.retransmit = None
        leg.ack_wait = None

    def _no_ack(self, call: Call, leg: Leg, wait: AckWait) -> None:
        """64*T1 and no ACK for our 2xx: the dialog stands, the session ends (§13.3.1.4)."""
        log.warning(
            "sip.no_ack",
            call_id=call.id,
            party=call.caller.number if leg is call.a else call.callee.number,
            cseq=wait.answer.cseq.number,
            retransmissions=wait.retransmissions,
        )
        self._hang_up(call, 408)

    def _fork_failed(self, call: Call, response: Response | None) -> None:
        if response is not None and (
            call.best is None or _rank(response.status) < _rank(call.best.status)
        ):
            call.best = response
        if call.state != "ringing":
            return
        if response is not None and 600 <= response.status < 700:
            for other in call.forks:
                if other.final is None:
                    self._cancel_fork(other)
        elif any(fork.final is None for fork in call.forks):
            return
        best = call.best
        status = best.status if best is not None else 408
        if self._next_step(call, status):
            return
        self._to_caller(call, status, best)
        self._end(call, _disposition(status), "callee", status)

    def _cancel_fork(self, leg: Leg) -> None:
        leg.cancel_wanted = True
        if leg.final is not None or leg.invite is None:
            return
        if not leg.provisional:
            return  # §9.1: CANCEL only after a provisional response; sent when it comes
        if getattr(leg, "_cancel_sent", False):
            return
        leg._cancel_sent = True  # type: ignore[attr-defined]
        cancel = build_cancel(leg.invite)
        self._endpoint.send_request(cancel, leg.flow)

    def _ring_timeout(self, call: Call) -> None:
        if call.state != "ringing":
            return
        for fork in call.forks:
            if fork.final is None:
                self._cancel_fork(fork)
        log.info("sip.call_unanswered", call_id=call.id, callee=call.callee.number)
        if self._next_step(call, 408):
            return
        self._to_caller(call, 480, None)
        self._end(call, Disposition.NO_ANSWER, "system", 480)

    def _next_step(self, call: Call, status: int) -> bool:
        """Every target failed: ask the route what comes next (forwarding, voicemail...).

        True when a next step was started; the caller keeps ringing meanwhile.
        """
        route = call.route
        if route is None or route.next_step is None or call.state != "ringing":
            return False
        ask = route.next_step
        route.next_step = None  # one step per route: a loop cannot spin here
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for fork in call.forks:
            fork.stale = True
        task = self._loop.create_task(self._take_next_step(call, ask, status))
        self._next_steps.add(task)
        task.add_done_callback(self._next_steps.discard)
        return True

    async def _take_next_step(self, call: Call, ask: Callable[[int], Any], status: int) -> None:
        previous = call.route
        try:
            route = await ask(status)
        except Exception:
            log.exception("sip.next_step_failed", call_id=call.id)
            route = None
        if call.state != "ringing":
            # The caller hung up meanwhile: free what the new route holds.
            for release in route.on_end if isinstance(route, Forward) else ():
                release()
            return
        if not isinstance(route, Forward) or not route.targets:
            if isinstance(route, Refusal):
                final, disposition = route.status, route.disposition
            elif status == 408:  # nobody answered in time: 480, as at the ring timeout
                final, disposition = 480, Disposition.NO_ANSWER
            else:
                final, disposition = status, _disposition(status)
            self._to_caller(call, final, None)
            self._end(call, disposition, "callee", final)
            return
        if previous is not None:
            route.on_end[:0] = previous.on_end
            route.on_call_end[:0] = previous.on_call_end
        call.route = route
        call.callee = route.callee
        call.best = None
        call.forks = []
        max_forwards = call.a_invite.max_forwards or DEFAULT_MAX_FORWARDS
        for uri, fork_flow in route.targets:
            self._fork(call, uri, fork_flow, max_forwards - 1)
        call.ring_timer = self._loop.call_later(
            route.ring_seconds or self.ring_timeout, self._ring_timeout, call
        )
        self._live.put(call.id, self._live_record(call))
        self._tell(call)
        log.info("sip.call_next_step", call_id=call.id, callee=call.callee.number, status=status)

    def _tell(self, call: Call) -> None:
        for watch in self.watchers:
            try:
                watch(call)
            except Exception:
                log.exception("sip.watcher_failed", call_id=call.id)

    # -- caller side --------------------------------------------------------------

    def on_cancel(self, invite: InviteServerTransaction) -> None:
        call = self._invites.get(id(invite))
        if call is None or call.state != "ringing":
            if not invite.terminated and invite.state.value == "proceeding":
                self._endpoint.reply(invite, 487)
            return
        for fork in call.forks:
            if fork.final is None:
                self._cancel_fork(fork)
        self._to_caller(call, 487, None)
        self._end(call, Disposition.CANCELLED, "caller", 487)

    def on_ack(self, request: Request, flow: Flow) -> None:
        entry = self._legs.get(request.call_id)
        if entry is not None:
            wait = entry[1].ack_wait
            if wait is not None and wait.acknowledge(request):
                self._stop_waiting(entry[1])  # our 2xx (INVITE or re-INVITE) got its ACK
        late = self._late_acks.pop((request.call_id, request.cseq.number), None)
        if late is not None:
            self._ack_late_offer(late, request)
            return
        if entry is None:
            return
        call, leg = entry
        if leg is not call.a or call.state != "answered":
            return
        if request.cseq.number == call.a_invite.cseq.number:
            b = call.answered
            if call.late_offer and b is not None and b.dialog is not None and b.ack is None:
                # The answer to the 2xx's offer: an anchored call's names the relay too.
                body = self._anchored(call, request.body, towards_caller=False)
                b.ack = b.dialog.create_ack(
                    b.invite.cseq.number if b.invite is not None else 1,
                    via=self._endpoint.via(b.flow),
                    body=body,
                    content_type=request.headers.get("Content-Type") if body else None,
                )
                self._endpoint.send(b.ack, b.flow)

    # -- in-dialog requests ----------------------------------------------------------

    def in_dialog(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        entry = self._legs.get(request.call_id)
        if entry is None:
            self._endpoint.reply(transaction, 481)
            return
        call, leg = entry
        if leg.dialog is None or request.to_tag != leg.dialog.local_tag:
            self._endpoint.reply(transaction, 481)
            return
        if not leg.dialog.receive_request(request):
            self._endpoint.reply(transaction, 500)
            return
        other = call.other(leg)
        transfer = call.transfer
        if request.method == "BYE" and transfer is not None and leg is transfer.transferor:
            # The transferor leaves once its REFER was accepted: the call goes on without it.
            self._endpoint.reply(transaction, 200)
            transfer.transferor_gone = True
            self._legs.pop(leg.call_id, None)
            return
        if request.method == "REFER":
            self._refer(call, leg, request, transaction)
            return
        if request.method == "BYE":
            self._endpoint.reply(transaction, 200)
            if other is not None and other.dialog is not None:
                self._send_in_dialog(other, "BYE")
            side = "caller" if leg is call.a else "callee"
            self._end(call, Disposition.ANSWERED, side, 200)
            return
        if other is None or other.dialog is None or call.state != "answered":
            self._endpoint.reply(transaction, 481 if other is None else 491)
            return
        detour = None
        if request.method == "INVITE" and self.in_dialog_hook is not None:
            try:
                detour = self.in_dialog_hook(call, leg, request)
            except Exception:
                log.exception("sip.in_dialog_hook_failed", call_id=call.id)
        if detour is not None and detour.status is not None:
            self._endpoint.reply(transaction, detour.status)
            return
        body = request.body if detour is None or detour.body is None else detour.body
        relayed = self._send_in_dialog(
            other,
            request.method,
            body=self._anchored(call, body, towards_caller=leg is not call.a),
            content_type=request.headers.get("Content-Type"),
        )
        after = detour.after if detour is not None else None
        self._client[id(relayed)] = _Relay(call, transaction, leg, other, after)

    # -- for features beside the core (hold music, group pickup) --------------------------

    @property
    def endpoint(self) -> SipEndpoint:
        return self._endpoint

    def expect(
        self, transaction: ClientTransaction, on_response: Callable[[Response | None], None]
    ) -> None:
        """Call ``on_response`` with each response to ``transaction`` (None: timed out)."""
        self._client[id(transaction)] = on_response

    def send_in_dialog(
        self,
        leg: Leg,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        on_response: Callable[[Response | None], None] | None = None,
    ) -> ClientTransaction:
        transaction = self._send_in_dialog(leg, method, body=body, content_type=content_type)
        if on_response is not None:
            self.expect(transaction, on_response)
        return transaction

    def anchored(self, call: Call, body: bytes, *, towards_caller: bool) -> bytes:
        return self._anchored(call, body, towards_caller=towards_caller)

    @staticmethod
    def _anchored(call: Call, body: bytes, *, towards_caller: bool) -> bytes:
        """A body as its route wants it: an anchored call's SDP names the relay, never a phone."""
        route = call.route
        if not body or route is None:
            return body
        rewrite = route.rewrite_inward if towards_caller else route.rewrite_outward
        return rewrite(body) if rewrite is not None else body

    def _send_in_dialog(
        self,
        leg: Leg,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> ClientTransaction:
        assert leg.dialog is not None
        contact = None
        if method == "INVITE" or method == "UPDATE":
            from voip.sip.uri import NameAddr

            user = leg.dialog.local_uri.uri
            number = user.user if isinstance(user, SipUri) and user.user else "unicomm"
            contact = NameAddr(parse_uri(self._endpoint.local_uri(number, leg.flow)))
        request = leg.dialog.create_request(
            method,
            via=self._endpoint.via(leg.flow),
            contact=contact,
            body=body,
            content_type=content_type if body else None,
            headers=headers,
        )
        return self._endpoint.send_request(request, leg.flow)

    def _relay_response(self, relay: _Relay, response: Response, transaction: Transaction) -> None:
        status = response.status
        if status == 100:
            return
        if status >= 200:
            if self._client.pop(id(transaction), None) is not None and relay.after is not None:
                self._loop.call_soon(relay.after, status)  # once this answer has gone on
        leg = relay.target
        if 200 <= status < 300 and leg is not None and leg.dialog is not None:
            request = transaction.request
            if request.method == "INVITE":
                leg.dialog.update_from_response(response)
                if not request.body and response.body:
                    # The 2xx is an offer: the answer will be in the origin's ACK.
                    origin = relay.origin.request
                    key = (origin.call_id, origin.cseq.number)
                    self._late_acks[key] = _LateAck(leg, request.cseq.number, relay.call)
                else:
                    ack = leg.dialog.create_ack(
                        request.cseq.number, via=self._endpoint.via(leg.flow)
                    )
                    self._endpoint.send(ack, leg.flow)
        if relay.origin.terminated:
            return
        answer = relay.origin.request.response(status, response.reason)
        if 100 < status < 300 and relay.origin.request.method == "INVITE":
            origin_dialog = relay.origin_leg.dialog
            number = "unicomm"
            if origin_dialog is not None and isinstance(origin_dialog.local_uri.uri, SipUri):
                number = origin_dialog.local_uri.uri.user or number
            local = self._endpoint.local_uri(number, relay.origin_leg.flow)
            answer.headers.add("Contact", f"<{local}>")
        if response.body:
            answer.headers.add(
                "Content-Type", response.headers.get("Content-Type") or "application/sdp"
            )
            answer.body = self._anchored(
                relay.call, response.body, towards_caller=relay.origin_leg is relay.call.a
            )
        try:
            self._endpoint.respond(relay.origin, answer)
        except Exception:
            log.debug("sip.relay_late", status=status)
            return
        if 200 <= status < 300 and relay.origin.request.method == "INVITE":
            self._await_ack(relay.call, relay.origin_leg, answer)

    def _ack_again(self, response: Response) -> None:
        """A 2xx of our (re-)INVITE again, its ACK lost: the same ACK again (§13.2.2.4)."""
        entry = self._legs.get(response.call_id)
        if entry is None:
            return
        leg = entry[1]
        ack = leg.dialog.ack_again(response) if leg.dialog is not None else None
        if ack is not None:
            self._endpoint.send(ack, leg.flow)

    def _ack_late_offer(self, late: _LateAck, ack: Request) -> None:
        """Carry the origin's SDP answer to the leg that made the offer in its 2xx."""
        leg = late.target
        if leg.dialog is None:
            return
        body = ack.body
        if late.call is not None:
            body = self._anchored(late.call, body, towards_caller=leg is late.call.a)
        relayed = leg.dialog.create_ack(
            late.cseq,
            via=self._endpoint.via(leg.flow),
            body=body,
            content_type=ack.headers.get("Content-Type") if body else None,
        )
        self._endpoint.send(relayed, leg.flow)

    # -- transfer (REFER, RFC 3515) ----------------------------------------------------

    def _refer(
        self, call: Call, leg: Leg, request: Request, transaction: ServerTransaction
    ) -> None:
        reply = self._endpoint.reply
        if call.state != "answered" or call.transfer is not None:
            reply(transaction, 491)  # one transfer at a time, of an answered call
            return
        if leg is not call.answered:
            # The caller's side would leave two legs we are the client of: not built yet.
            reply(transaction, 403, reason="Forbidden (transfer by the callee only)")
            return
        try:
            refer_to = parse_refer_to(request.headers.get("Refer-To") or "")
        except SipParseError:
            reply(transaction, 400, reason="Bad Request (Refer-To)")
            return
        if refer_to.replaces is not None:
            replaced = self._replaced_call(call, refer_to.replaces)
            if replaced is None or replaced.answered is None:
                reply(transaction, 403, reason="Forbidden (Replaces names no call of yours)")
                return
            reply(transaction, 202)
            transfer = _Transfer(
                call, leg, replaced.callee, replaced.answered, replaced=replaced, owned=False
            )
            call.transfer = transfer
            self._notify_transfer(transfer, 100)
            log.info("sip.transfer_attended", call_id=call.id, replaces=replaced.id)
            target = replaced.answered
            target.ack = None  # the next 2xx to acknowledge is the re-INVITE's
            reinvite = self._send_in_dialog(target, "INVITE")  # no offer: the 2xx brings one
            transfer.target_cseq = reinvite.request.cseq.number
            self._client[id(reinvite)] = transfer
            return
        reply(transaction, 202)
        transfer = _Transfer(call, leg)
        call.transfer = transfer
        self._notify_transfer(transfer, 100)
        log.info("sip.transfer", call_id=call.id, by=call.callee.number, target=refer_to.number)
        task = self._loop.create_task(self._call_transfer_target(transfer, refer_to.number))
        self._next_steps.add(task)
        task.add_done_callback(self._next_steps.discard)

    def _replaced_call(self, call: Call, replaces: Replaces) -> Call | None:
        """The transferor's own answered consultation call that ``replaces`` names (RFC 3891)."""
        entry = self._legs.get(replaces.call_id)
        if entry is None:
            return None
        other, leg = entry
        dialog = leg.dialog
        if (
            other is call
            or leg is not other.a  # the transferor called the target
            or other.state != "answered"
            or other.transfer is not None
            or dialog is None
            or dialog.local_tag != replaces.to_tag
            or dialog.remote_tag != replaces.from_tag
            or other.caller.number != call.callee.number  # only one's own calls
        ):
            return None
        return other

    async def _call_transfer_target(self, transfer: _Transfer, number: str) -> None:
        call = transfer.call
        target = await self._accounts.get(number)
        if target is None or not target.enabled:
            self._transfer_failed(transfer, 404)
            return
        contacts = await self._location.lookup(target.number)
        reachable = [(c.uri, f) for c in contacts if (f := c.flow(self.instance)) is not None]
        if call.transfer is not transfer:
            return  # the call ended meanwhile
        if not reachable:
            self._transfer_failed(transfer, 480)
            return
        transfer.target = target
        uri_text, flow = reachable[0]
        try:
            uri = parse_uri(uri_text)
        except SipParseError:
            self._transfer_failed(transfer, 480)
            return
        # No offer: the target's 200 brings one, which the caller then answers.
        headers = Headers()
        headers.add("Via", str(self._endpoint.via(flow)))
        headers.add("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        display = quote(call.caller.name) + " " if call.caller.name else ""
        headers.add("From", f"{display}<sip:{call.caller.number}@{self.realm}>;tag={new_tag()}")
        headers.add("To", f"<sip:{target.number}@{self.realm}>")
        call_id = new_call_id()
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 INVITE")
        contact = self._endpoint.local_uri(call.caller.number, flow)
        headers.add("Contact", f"<{contact}>")
        headers.add("Allow", ALLOW)
        invite = Request("INVITE", uri, headers, b"")
        leg = Leg("b", flow, call_id, invite=invite)
        transfer.leg = leg
        self._legs[call_id] = (call, leg)
        leg.transaction = self._endpoint.send_request(invite, flow)
        self._client[id(leg.transaction)] = transfer
        transfer.timer = self._loop.call_later(self.ring_timeout, self._cancel_fork, leg)

    def _transfer_response(
        self, transfer: _Transfer, response: Response, transaction: ClientTransaction
    ) -> None:
        status = response.status
        if transaction is transfer.reinvite:
            self._transfer_reinvited(transfer, response, transaction)
            return
        leg = transfer.leg
        if leg is None or leg.invite is None:
            return
        if not transfer.owned and status >= 200:
            self._client.pop(id(transaction), None)  # the consultation call's own re-INVITE
        if status < 200:
            leg.provisional = True
            if leg.cancel_wanted or transfer.call.transfer is not transfer:
                self._cancel_fork(leg)
            elif status == 180:
                self._notify_transfer(transfer, 180)
            return
        if status >= 300:
            if transfer.owned:
                leg.final = status
            self._transfer_failed(transfer, status)
            return
        if leg.dialog is None:
            try:
                leg.dialog = Dialog.from_uac(leg.invite, response)
            except SipParseError:
                return
        elif not transfer.owned and leg.ack is None:
            leg.dialog.update_from_response(response)  # the re-INVITE may move its target
        if leg.ack is not None:
            self._endpoint.send(leg.ack, leg.flow)  # a retransmitted 2xx
            return
        if transfer.reinvite is not None:
            return  # the caller's answer is on its way; the ACK will carry it
        if transfer.timer is not None:
            transfer.timer.cancel()
        call = transfer.call
        if call.transfer is not transfer or call.a.dialog is None or not response.body:
            # Too late (or no offer to give the caller): acknowledge, then hang up ours.
            if transfer.owned:
                self._drop_transfer_leg(leg)
            elif leg.ack is None:
                leg.ack = leg.dialog.create_ack(
                    transfer.target_cseq, via=self._endpoint.via(leg.flow)
                )
                self._endpoint.send(leg.ack, leg.flow)
            self._transfer_failed(transfer, 488)
            return
        reinvite = self._send_in_dialog(
            call.a,
            "INVITE",
            body=self._anchored(call, response.body, towards_caller=True),
            content_type=response.headers.get("Content-Type") or "application/sdp",
        )
        transfer.reinvite = reinvite
        self._client[id(reinvite)] = transfer

    def _transfer_reinvited(
        self, transfer: _Transfer, response: Response, transaction: ClientTransaction
    ) -> None:
        status = response.status
        call, leg = transfer.call, transfer.leg
        if status < 200 or leg is None or leg.dialog is None:
            return
        a = call.a
        if a.dialog is not None and status < 300:
            a.dialog.update_from_response(response)
            ack = a.dialog.create_ack(
                transaction.request.cseq.number, via=self._endpoint.via(a.flow)
            )
            self._endpoint.send(ack, a.flow)
        self._client.pop(id(transaction), None)
        if leg.ack is not None:
            return  # a retransmitted 2xx of the re-INVITE: its ACK went again above
        answer = self._anchored(call, response.body, towards_caller=False)
        leg.ack = leg.dialog.create_ack(
            transfer.target_cseq,
            via=self._endpoint.via(leg.flow),
            body=answer if status < 300 else b"",
            content_type=(response.headers.get("Content-Type") or "application/sdp")
            if status < 300 and answer
            else None,
        )
        self._endpoint.send(leg.ack, leg.flow)
        if status >= 300 or call.transfer is not transfer:
            if transfer.owned:
                self._drop_transfer_leg(leg)
            self._transfer_failed(transfer, 488)
            return
        self._transfer_done(transfer, leg)

    def _transfer_done(self, transfer: _Transfer, leg: Leg) -> None:
        call = transfer.call
        old = transfer.transferor
        call.transfer = None
        call.answered = leg
        call.forks.append(leg)  # so the end of the call forgets it like any answered fork
        if transfer.target is not None:
            call.callee = transfer.target
        route = call.route
        if route is not None:
            # The old callee's resources (a media worker's slot for an IVR) are free now;
            # an anchored (trunk) route keeps its relay (on_call_end) for the rest of the call.
            for release in route.on_end:
                try:
                    release()
                except Exception:
                    log.exception("sip.route_release_failed", call_id=call.id)
            route.on_end = []
            if route.rewrite_outward is None and route.rewrite_inward is None:
                call.route = None
        if not transfer.transferor_gone:
            self._notify_transfer(transfer, 200)
            if old.dialog is not None:
                self._send_in_dialog(old, "BYE")
        self._legs.pop(old.call_id, None)
        replaced = transfer.replaced
        if replaced is not None:
            # The consultation call ends for the transferor only: its callee is ours now.
            if replaced.a.dialog is not None:
                self._send_in_dialog(replaced.a, "BYE")
            self._end(replaced, Disposition.ANSWERED, "caller", 200)
            self._legs[leg.call_id] = (call, leg)
        self._live.put(call.id, self._live_record(call))
        self._tell(call)
        log.info("sip.transferred", call_id=call.id, callee=call.callee.number)

    def _transfer_failed(self, transfer: _Transfer, status: int) -> None:
        call = transfer.call
        if call.transfer is not transfer:
            return
        call.transfer = None
        if transfer.timer is not None:
            transfer.timer.cancel()
        if transfer.leg is not None and transfer.owned:
            self._drop_transfer_leg(transfer.leg)
        log.info("sip.transfer_failed", call_id=call.id, status=status)
        if transfer.transferor_gone:
            # Nobody left to talk to the caller: end the call.
            if call.a.dialog is not None:
                self._send_in_dialog(call.a, "BYE")
            self._end(call, Disposition.ANSWERED, "callee", 200)
            return
        self._notify_transfer(transfer, status)  # the transferor keeps the caller

    def _abort_transfer(self, transfer: _Transfer) -> None:
        """The call ended during a transfer: the target's call goes too."""
        transfer.call.transfer = None
        if transfer.timer is not None:
            transfer.timer.cancel()
        if transfer.leg is not None and transfer.owned:
            self._drop_transfer_leg(transfer.leg)

    def _drop_transfer_leg(self, leg: Leg) -> None:
        """End our call to a transfer target, whatever state it is in; once."""
        if leg.stale and (leg.dialog is None or leg.ack is not None):
            return  # already ended (a 2xx after our CANCEL comes back here for ACK and BYE)
        leg.stale = True
        if leg.dialog is not None:
            if leg.ack is None:  # its 2xx waits for our ACK before the BYE means anything
                leg.ack = leg.dialog.create_ack(1, via=self._endpoint.via(leg.flow))
                self._endpoint.send(leg.ack, leg.flow)
            self._send_in_dialog(leg, "BYE")
        elif leg.final is None:
            self._cancel_fork(leg)  # a 2xx still to come is answered with ACK and BYE
        self._legs.pop(leg.call_id, None)

    def _notify_transfer(self, transfer: _Transfer, status: int) -> None:
        leg = transfer.transferor
        if transfer.transferor_gone or leg.dialog is None:
            return
        self._send_in_dialog(
            leg,
            "NOTIFY",
            body=sipfrag(status),
            content_type=SIPFRAG,
            headers=notify_headers(status),
        )

    # -- the end -------------------------------------------------------------------

    def _end(self, call: Call, disposition: Disposition, side: str, status: int) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        if call.transfer is not None:
            self._abort_transfer(call.transfer)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for leg in (call.a, call.answered):
            if leg is not None:
                self._stop_waiting(leg)
        self._legs.pop(call.a.call_id, None)
        for fork in call.forks:
            if fork.final is not None or fork is call.answered:
                self._legs.pop(fork.call_id, None)
                if fork.transaction is not None:
                    self._client.pop(id(fork.transaction), None)
        self._invites.pop(id(call.a_transaction), None)
        if self._late_acks:
            legs = (call.a, call.answered)
            for key in [k for k, late in self._late_acks.items() if late.target in legs]:
                del self._late_acks[key]
        self.active.dec()
        self._live.remove(call.id)
        self._tell(call)
        route = call.route
        for release in [*route.on_end, *route.on_call_end] if route is not None else ():
            try:
                release()
            except Exception:
                log.exception("sip.route_release_failed", call_id=call.id)
        ended = dt.datetime.now(dt.UTC)
        duration = (ended - call.answered_at).total_seconds() if call.answered_at else 0.0
        self.calls_total.labels(disposition.value).inc()
        self._cdr.add(
            call_id=call.id[:200],
            caller=call.caller.number,
            callee=call.callee.number,
            caller_department_id=call.caller.department_id,
            callee_department_id=call.callee.department_id,
            direction=call.route.direction if call.route is not None else "internal",
            started_at=call.started_at,
            answered_at=call.answered_at,
            ended_at=ended,
            duration_seconds=round(duration, 3),
            disposition=disposition,
            hangup_side=side,
            sip_status=status,
            node=self.node,
        )
        log.info(
            "sip.call_ended",
            call_id=call.id,
            caller=call.caller.number,
            callee=call.callee.number,
            disposition=disposition.value,
            hangup=side,
            status=status,
            seconds=round(duration, 1),
        )

    def _live_record(self, call: Call) -> dict[str, Any]:
        return {
            "call_id": call.id,
            "caller": call.caller.number,
            "callee": call.callee.number,
            "state": call.state,
            "started_at": call.started_at.isoformat(),
            "answered_at": call.answered_at.isoformat() if call.answered_at else None,
            "node": self.node,
        }

    def hang_up_all(self) -> None:
        """At shutdown: end every call cleanly so both phones know and the CDR is written."""
        for call in list(self._invites.values()):
            self._hang_up(call)

    def hang_up(self, call_id: str) -> bool:
        """End one call from the exchange's side (its media worker died, say)."""
        entry = self._legs.get(call_id)
        if entry is None:
            return False
        self._hang_up(entry[0])
        return True

    def _hang_up(self, call: Call, status: int = 200) -> None:
        if call.state == "answered":
            for leg in (call.a, call.answered):
                if leg is not None and leg.dialog is not None:
                    self._send_in_dialog(leg, "BYE")
            self._end(call, Disposition.ANSWERED, "system", status)
        elif call.state == "ringing":
            for fork in call.forks:
                if fork.final is None:
                    self._cancel_fork(fork)
            self._to_caller(call, 503, None)
            self._end(call, Disposition.FAILED, "system", 503)
