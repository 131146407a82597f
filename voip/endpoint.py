"""The asyncio adapter around the sans-I/O transaction layer.

It owns the transports' sockets and connections, feeds every received message
to :class:`~voip.sip.transaction_layer.TransactionLayer`, keeps one loop timer
armed at the layer's next deadline, and hands what the layer delivers to the
transaction user (the registrar and call core, see :mod:`voip.server`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Protocol

import structlog

from voip.sip.errors import SipParseError, SipStateError
from voip.sip.ids import new_branch
from voip.sip.message import Request, Response, Via, reason_phrase
from voip.sip.parser import InvalidMessage, parse_head, parse_message
from voip.sip.transaction import (
    ClientTransaction,
    DeliverRequest,
    DeliverResponse,
    Event,
    InviteServerTransaction,
    SendMessage,
    ServerTransaction,
    State,
    Terminated,
    TimerSettings,
    TransactionTimeout,
    TransportError,
)
from voip.sip.transaction_layer import Transaction, TransactionLayer

from .transport import stream
from .transport.base import Connection, Flow
from .transport.udp import UdpTransport

log = structlog.get_logger("voip.endpoint")

# A UDP datagram larger than this is refused: SIP over UDP should stay under the
# path MTU (RFC 3261 §18.1.1) and anything this big is an attack or a mistake.
MAX_DATAGRAM = 16384
_WARNING_TEXT = re.compile(r"[^\x20-\x7e]|\"|\\")


class TransactionUser(Protocol):
    def on_request(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        """A new request (not ACK, not CANCEL) with its server transaction."""

    def on_ack(self, request: Request, flow: Flow) -> None:
        """An ACK for a 2xx (end to end, outside any transaction)."""

    def on_cancel(self, invite: InviteServerTransaction, cancel: Request) -> None:
        """A CANCEL matched a pending INVITE; the endpoint already answered it 200."""

    def on_response(self, response: Response, transaction: ClientTransaction) -> None: ...

    def on_timeout(self, transaction: Transaction) -> None:
        """No answer in time (timer B/F/H) or the transport failed."""


class Gatekeeper(Protocol):
    def admit(self, host: str) -> bool:
        """Count one request from ``host``; False to drop it (banned or over the rate)."""


class Relay(Protocol):
    """Forwards what is for another node's or our connections' phones (voip.relay)."""

    def take_request(self, request: Request, flow: Flow) -> bool:
        """True when the request was relayed (or refused) and is not for the TU."""

    def take_response(self, response: Response) -> None:
        """A response no client transaction matched."""


class Counters(Protocol):
    def request(self, method: str) -> None: ...

    def response(self, status: int) -> None: ...


class SipEndpoint:
    def __init__(
        self,
        *,
        advertised_host: str,
        gatekeeper: Gatekeeper,
        counters: Counters,
        timers: TimerSettings | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.layer = TransactionLayer(timers) if timers else TransactionLayer()
        self.advertised_host = advertised_host
        # The host we show a particular peer instead (host, port -> host): the carrier trunk
        # sees our public address in Via and Contact, never the inside one (topology hiding).
        self.faces: dict[tuple[str, int], str] = {}
        self.gatekeeper = gatekeeper
        self.counters = counters
        self.tu: TransactionUser | None = None
        self.relay: Relay | None = None
        self.udp: UdpTransport | None = None
        self.ports: dict[str, int] = {}
        self.connections: dict[int, Connection] = {}
        self.on_connection_lost: Callable[[Connection], None] | None = None
        self._client_tls = client_tls
        self._outbound: dict[tuple[str, str, int], Connection] = {}
        self._flows: dict[int, Flow] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._loop = asyncio.get_running_loop()

    # -- transport side -------------------------------------------------------

    def allow(self, flow: Flow) -> bool:
        return self.gatekeeper.admit(flow.host)

    def connection_made(self, connection: Connection) -> None:
        self.connections[connection.flow.connection] = connection

    def connection_lost(self, connection: Connection) -> None:
        self.connections.pop(connection.flow.connection, None)
        for key, outbound in list(self._outbound.items()):
            if outbound is connection:
                del self._outbound[key]
        if self.on_connection_lost is not None:
            self.on_connection_lost(connection)

    def receive_datagram(self, data: bytes, flow: Flow) -> None:
        if not data.strip(b"\r\n\t "):
            # A CRLF keep-alive over UDP (or an empty WebSocket frame): nothing to answer.
            return
        if not self.gatekeeper.admit(flow.host):
            return
        if len(data) > MAX_DATAGRAM:
            self._answer_broken(data, SipParseError("message too large", 413), flow)
            return
        try:
            message = parse_message(data)
        except SipParseError as error:
            self._answer_broken(data, error, flow)
            return
        self._dispatch(message, flow)

    def receive_message(self, message: Request | Response, flow: Flow) -> None:
        if self.gatekeeper.admit(flow.host):
            self._dispatch(message, flow)

    def receive_invalid(self, invalid: InvalidMessage, flow: Flow) -> None:
        if self.gatekeeper.admit(flow.host) and isinstance(invalid.message, Request):
            self._answer_head(invalid.message, invalid.error, flow)

    def _answer_broken(self, data: bytes, error: SipParseError, flow: Flow) -> None:
        try:
            head = parse_head(data)
        except SipParseError:
            log.debug("sip.dropped", flow=str(flow), error=str(error))
            return
        if isinstance(head, Request):
            self._answer_head(head, error, flow)

    def _answer_head(self, request: Request, error: SipParseError, flow: Flow) -> None:
        """A stateless error answer, when the request carries what a response must copy."""
        needed = ("Via", "From", "To", "Call-ID", "CSeq")
        if request.method == "ACK" or any(name not in request.headers for name in needed):
            log.debug("sip.dropped", flow=str(flow), error=str(error))
            return
        response = request.response(error.status)
        text = _WARNING_TEXT.sub("?", str(error))[:120]
        response.headers.add("Warning", f'399 unicomm "{text}"')
        log.info("sip.bad_request", flow=str(flow), status=error.status, error=str(error))
        self.counters.response(error.status)
        self.send(response, flow)

    # -- dispatch -------------------------------------------------------------

    def _dispatch(self, message: Request | Response, flow: Flow) -> None:
        tu = self.tu
        if tu is None:
            return
        now = self._loop.time()
        if isinstance(message, Response):
            matched = self.layer.receive_response(message, now)
            if matched is not None:
                self._process(matched[0], matched[1])
            elif self.relay is not None:
                self.relay.take_response(message)
            self._rearm()
            return
        self.counters.request(message.method)
        try:
            _mark_received(message, flow)
        except SipParseError as error:
            self._answer_head(message, error, flow)
            return
        if self.relay is not None and self.relay.take_request(message, flow):
            return
        matched_request = self.layer.receive_request(message, now)
        if matched_request is not None:
            # A retransmission, or the ACK of a non-2xx: the transaction absorbs it.
            self._process(*matched_request)
        elif message.method == "ACK":
            tu.on_ack(message, flow)
        else:
            transaction = self.layer.create_server(message, reliable=flow.reliable, now=now)
            self._flows[id(transaction)] = flow
            if message.method == "CANCEL":
                self._cancel(message, transaction, tu)
            else:
                if message.method == "INVITE":
                    # At once rather than after 200 ms: it stops the caller's retransmissions.
                    self.respond(transaction, message.response(100))
                tu.on_request(message, transaction, flow)
        self._rearm()

    def _cancel(self, cancel: Request, transaction: ServerTransaction, tu: TransactionUser) -> None:
        target = self.layer.cancel_target(cancel)
        if target is None or target.state is not State.PROCEEDING:
            self.respond(transaction, cancel.response(481))
            return
        self.respond(transaction, cancel.response(200))
        tu.on_cancel(target, cancel)

    def _process(self, transaction: Transaction, events: list[Event]) -> None:
        tu = self.tu
        for event in events:
            if isinstance(event, SendMessage):
                flow = self._flows.get(id(transaction))
                if flow is not None and not self.send(event.message, flow, transaction):
                    self._process(transaction, self.layer.transport_error(transaction))
                    return
            elif tu is None:
                continue
            elif isinstance(event, DeliverResponse):
                assert not isinstance(transaction, (InviteServerTransaction,))
                tu.on_response(event.response, transaction)  # type: ignore[arg-type]
            elif isinstance(event, DeliverRequest):
                flow = self._flows.get(id(transaction))
                if flow is not None:
                    tu.on_ack(event.request, flow)
            elif isinstance(event, TransactionTimeout | TransportError):
                tu.on_timeout(transaction)
            elif isinstance(event, Terminated):
                self._flows.pop(id(transaction), None)

    # -- sending --------------------------------------------------------------

    def respond(self, transaction: ServerTransaction, response: Response) -> None:
        """Send a response through its server transaction (which retransmits it if needed)."""
        if transaction.terminated:
            return
        try:
            events = self.layer.send_response(transaction, response, self._loop.time())
        except SipStateError:
            # Answered already (a CANCEL won the race with the TU): nothing more to say.
            log.debug("sip.late_response", status=response.status)
            return
        self.counters.response(response.status)
        self._process(transaction, events)
        self._rearm()

    def reply(
        self,
        transaction: ServerTransaction,
        status: int,
        *,
        headers: list[tuple[str, str]] | None = None,
        to_tag: str | None = None,
        reason: str | None = None,
    ) -> Response:
        response = transaction.request.response(status, reason, to_tag=to_tag)
        for name, value in headers or ():
            response.headers.add(name, value)
        self.respond(transaction, response)
        return response

    def send_request(self, request: Request, flow: Flow) -> ClientTransaction:
        """Start a client transaction for ``request`` (its top Via must be ours)."""
        transaction, events = self.layer.start_client(
            request, reliable=flow.reliable, now=self._loop.time()
        )
        self._flows[id(transaction)] = flow
        self._process(transaction, events)
        self._rearm()
        return transaction

    def flow_of(self, transaction: Transaction) -> Flow | None:
        return self._flows.get(id(transaction))

    def send(
        self, message: Request | Response, flow: Flow, transaction: Transaction | None = None
    ) -> bool:
        """Write a message to a flow; False when it cannot be delivered at all."""
        data = bytes(message)
        if flow.transport == "UDP":
            if self.udp is None:
                return False
            self.udp.sendto(data, flow.address)
            return True
        connection = self.connections.get(flow.connection) if flow.connection else None
        if connection is None:
            connection = self._outbound.get((flow.transport, flow.host, flow.port))
        if connection is not None:
            connection.send(data)
            return True
        if flow.transport in ("TCP", "TLS") and not flow.connection:
            self._loop.create_task(self._connect_and_send(flow, data, transaction))
            return True
        return False

    async def _connect_and_send(
        self, flow: Flow, data: bytes, transaction: Transaction | None
    ) -> None:
        key = (flow.transport, flow.host, flow.port)
        try:
            connection = self._outbound.get(key)
            if connection is None:
                tls = self._client_tls if flow.transport == "TLS" else None
                if flow.transport == "TLS" and tls is None:
                    raise OSError("no TLS client context")
                connection = await stream.connect(self, flow.host, flow.port, tls=tls)
                self._outbound[key] = connection
            connection.send(data)
        except (OSError, TimeoutError) as exc:
            log.info("sip.connect_failed", flow=str(flow), error=str(exc))
            if transaction is not None:
                self._process(transaction, self.layer.transport_error(transaction))
                self._rearm()

    def host_for(self, flow: Flow | None) -> str:
        """The host we show the peer of ``flow``: its face if it has one, else the advertised."""
        if flow is None or not self.faces:
            return self.advertised_host
        return self.faces.get((flow.host, flow.port), self.advertised_host)

    def via(self, transport: str | Flow) -> Via:
        """A fresh Via for a request we originate over ``transport`` (or towards a flow)."""
        flow = transport if isinstance(transport, Flow) else None
        name = flow.transport if flow is not None else str(transport)
        port = self.ports.get(name) or self.ports.get("UDP")
        return Via(name, self.host_for(flow), port, {"branch": new_branch(), "rport": None})

    def local_uri(self, user: str, transport: str | Flow) -> str:
        """Our Contact URI over ``transport`` (or towards a flow): where in-dialog requests go."""
        flow = transport if isinstance(transport, Flow) else None
        name = flow.transport if flow is not None else str(transport)
        port = self.ports.get(name) or self.ports.get("UDP")
        suffix = "" if name == "UDP" else f";transport={name.lower()}"
        return f"sip:{user}@{self.host_for(flow)}:{port}{suffix}"

    # -- timers ---------------------------------------------------------------

    def _rearm(self) -> None:
        due = self.layer.next_deadline()
        if due is None:
            return
        if self._timer_due is not None and self._timer_due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        for transaction, events in self.layer.handle_timers(self._loop.time()):
            try:
                self._process(transaction, events)
            except Exception:
                log.exception("sip.timer_failed")
        self._rearm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for connection in list(self.connections.values()):
            connection.close()
        if self.udp is not None:
            self.udp.close()


def _mark_received(request: Request, flow: Flow) -> None:
    """RFC 3261 §18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via."""
    via = request.top_via
    if "rport" in via.params:
        via.params["rport"] = str(flow.port)
        via.params["received"] = flow.host
    elif via.host != flow.host:
        via.params["received"] = flow.host
    else:
        return
    request.headers.remove_first("Via")
    request.headers.prepend("Via", str(via))


def status_line(status: int) -> str:
    return f"{status} {reason_phrase(status)}"
