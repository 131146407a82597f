"""VoipServer: the SIP side of the exchange, started and stopped with the web app.

It owns the transports (UDP, TCP, TLS, WebSocket at ``/sip``), the endpoint and
its transaction layer, and the transaction user: the registrar, the call core
and the small answers (OPTIONS, 405/501) given here.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Counter

from core.context import AppContext
from voip.sip.message import Request, Response
from voip.sip.transaction import (
    ClientTransaction,
    InviteServerTransaction,
    ServerTransaction,
    TimerSettings,
)
from voip.sip.transaction_layer import Transaction

from .accounts import Accounts
from .authn import Authenticator
from .b2bua import ALLOW, B2bua
from .calls import LiveCalls
from .cdr import CdrWriter
from .endpoint import SipEndpoint
from .location import Location
from .protection import Protection
from .registrar import ExpiryPolicy, Registrar
from .relay import NodeRelay
from .tls import client_context, ensure_self_signed, server_context
from .transport import ws
from .transport.base import Connection, Flow
from .transport.stream import StreamListener
from .transport.udp import UdpTransport

log = structlog.get_logger("voip.server")

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "UPDATE",
        "INFO",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "MESSAGE",
        "REFER",
    }
)
IN_DIALOG = frozenset({"BYE", "INVITE", "UPDATE", "INFO", "NOTIFY", "MESSAGE", "REFER"})


def _detect_host(bind: str) -> str:
    if bind not in ("", "0.0.0.0", "::"):
        return bind
    # The address the default route leaves from; connect() on UDP sends nothing.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


class _Metrics:
    def __init__(self, ctx: AppContext) -> None:
        self._requests = Counter(
            "unicomm_sip_requests", "SIP requests received", ["method"], registry=ctx.metrics
        )
        self._responses = Counter(
            "unicomm_sip_responses", "SIP responses sent", ["status"], registry=ctx.metrics
        )
        self.registrations = Counter(
            "unicomm_sip_registrations", "REGISTER outcomes", ["result"], registry=ctx.metrics
        )
        self._request_children: dict[str, Any] = {}
        self._response_children: dict[int, Any] = {}

    def request(self, method: str) -> None:
        child = self._request_children.get(method)
        if child is None:
            label = method if method in KNOWN_METHODS else "other"
            child = self._request_children[method] = self._requests.labels(label)
        child.inc()

    def response(self, status: int) -> None:
        child = self._response_children.get(status)
        if child is None:
            child = self._response_children[status] = self._responses.labels(str(status))
        child.inc()


class VoipServer:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.node = settings.node_name or socket.gethostname()
        # Connection ids restart with the process: bindings name the instance too.
        self.instance = secrets.token_hex(4)
        self.advertised_host = settings.sip_advertised_host or _detect_host(settings.sip_host)
        self.metrics = _Metrics(ctx)
        self.protection = Protection(
            ctx.state,
            rate_limit=settings.sip_rate_limit,
            ban_threshold=settings.sip_ban_threshold,
            ban_seconds=settings.sip_ban_seconds,
            scan_threshold=settings.sip_scan_threshold,
            trusted=settings.sip_trusted_networks,
            registry=ctx.metrics,
        )
        self.accounts = Accounts(ctx.db)
        self.authenticator = Authenticator(
            settings.sip_realm, ctx.secret.encode(), self.accounts, self.protection
        )
        self.location = Location(ctx.db, ctx.state, self.node)
        self.cdr = CdrWriter(ctx.db)
        self.live = LiveCalls(ctx.state)
        self.endpoint: SipEndpoint | None = None
        self.registrar: Registrar | None = None
        self.b2bua: B2bua | None = None
        # SUBSCRIBE handling, set by the PBX features (message-waiting); None: 405/481.
        self.subscriptions: (
            Callable[[Request, ServerTransaction, Flow], Coroutine[Any, Any, None]] | None
        ) = None
        self._listeners: list[StreamListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.ports: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        settings = self.ctx.settings
        endpoint = SipEndpoint(
            advertised_host=self.advertised_host,
            gatekeeper=self.protection,
            counters=self.metrics,
            # T1, T2, T4 for every transaction and for our 2xx awaiting its ACK (AckWait).
            timers=TimerSettings(
                t1=settings.sip_t1_ms / 1000,
                t2=settings.sip_t2_ms / 1000,
                t4=settings.sip_t4_ms / 1000,
            ),
            client_tls=client_context(),
        )
        endpoint.tu = self
        endpoint.on_connection_lost = self.on_connection_lost
        self.endpoint = endpoint
        await self.accounts.reload()
        host = settings.sip_host
        udp, tcp = await self._bind_pair(endpoint, host, settings.sip_port)
        endpoint.udp = udp
        self._listeners.append(tcp)
        endpoint.ports.update({"UDP": udp.local[1], "TCP": tcp.local[1]})
        try:
            tls = await StreamListener.listen(
                endpoint, host, settings.sip_tls_port, tls=self._tls_context()
            )
            self._listeners.append(tls)
            endpoint.ports["TLS"] = tls.local[1]
        except OSError as exc:
            log.error("sip.tls_unavailable", port=settings.sip_tls_port, error=str(exc))
        endpoint.ports["WS"] = endpoint.ports["WSS"] = settings.http_port
        self.ports = dict(endpoint.ports)
        # Other nodes reach phones on our connections through us, and we through them.
        relay = NodeRelay(endpoint, self.location)
        endpoint.relay = relay
        address = f"{self.advertised_host}:{endpoint.ports['UDP']}"
        await self.location.publish_node(self.node, address)
        await relay.refresh()
        policy = ExpiryPolicy(
            settings.sip_min_expires, settings.sip_max_expires, settings.sip_default_expires
        )
        self.registrar = Registrar(
            endpoint,
            self.authenticator,
            self.location,
            policy,
            node=self.node,
            instance=self.instance,
        )
        self.b2bua = B2bua(
            endpoint,
            self.authenticator,
            self.accounts,
            self.location,
            self.cdr,
            self.live,
            realm=settings.sip_realm,
            node=self.node,
            instance=self.instance,
            ring_timeout=settings.sip_ring_timeout,
            registry=self.ctx.metrics,
        )
        for name, factory in (
            ("voip.accounts", self.accounts.run),
            ("voip.cdr", self.cdr.run),
            ("voip.live_calls", self.live.run),
            ("voip.purge", self._purge),
        ):
            self._tasks.add(self.ctx.spawn(name, factory))
        log.info(
            "sip.listening",
            host=host,
            advertised=self.advertised_host,
            ports=self.ports,
            node=self.node,
        )

    async def _bind_pair(
        self, endpoint: SipEndpoint, host: str, port: int
    ) -> tuple[UdpTransport, StreamListener]:
        """UDP and TCP on the same port number (port 0: any free one, for tests)."""
        for _ in range(20):
            udp = await UdpTransport.listen(endpoint, host, port)
            try:
                tcp = await StreamListener.listen(endpoint, host, udp.local[1])
            except OSError:
                udp.close()
                if port:
                    raise
                continue
            return udp, tcp
        raise OSError("no port free for both UDP and TCP")

    def _tls_context(self) -> Any:
        settings = self.ctx.settings
        if settings.sip_tls_cert and settings.sip_tls_key:
            cert, key = Path(settings.sip_tls_cert), Path(settings.sip_tls_key)
        else:
            cert, key = ensure_self_signed(settings.path("tls"), self.advertised_host)
        return server_context(cert, key)

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                removed = await self.location.purge_expired()
                if removed:
                    log.info("sip.bindings_expired", count=removed)
            except Exception:
                log.exception("sip.purge_failed")

    async def stop(self) -> None:
        # Connections closed by the shutdown keep their bindings: the phones reconnect
        # and re-register, and the database keeps them findable meanwhile.
        self._stopping = True
        if self.b2bua is not None:
            self.b2bua.hang_up_all()
            await asyncio.sleep(0.05)  # let the BYEs and final answers leave
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.live.drain()
        await self.cdr.flush()
        for listener in self._listeners:
            await listener.close()
        if self.endpoint is not None:
            self.endpoint.close()
        log.info("sip.stopped", node=self.node)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        try:
            await self.start()
        except OSError as exc:
            # The console and the other services stay useful; the log says why SIP is down.
            log.error("sip.unavailable", error=str(exc), port=self.ctx.settings.sip_port)
            self.endpoint = None
        yield
        if self.endpoint is not None:
            await self.stop()

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.endpoint is None:
            raise web.HTTPServiceUnavailable(text="SIP is not running")
        response: web.StreamResponse = await ws.handler(self.endpoint)(request)
        return response

    # -- the transaction user ----------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, Any], transaction: ServerTransaction) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, transaction))

    def _finished(self, task: asyncio.Task[Any], transaction: ServerTransaction) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        log.error(
            "sip.handler_failed",
            method=transaction.request.method,
            error=repr(error),
            exc_info=error,
        )
        if self.endpoint is not None and not transaction.terminated:
            try:
                self.endpoint.reply(transaction, 500)
            except Exception:  # already answered: nothing more to say
                pass

    def on_request(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        endpoint = self.endpoint
        assert endpoint is not None and self.registrar is not None and self.b2bua is not None
        method = request.method
        if method == "REGISTER":
            self._run(self._register(request, transaction, flow), transaction)
        elif request.to_tag is not None and method in IN_DIALOG:
            self.b2bua.in_dialog(request, transaction, flow)
        elif method == "INVITE":
            self._run(self.b2bua.invite(request, transaction, flow), transaction)
        elif method == "SUBSCRIBE" and self.subscriptions is not None:
            self._run(self.subscriptions(request, transaction, flow), transaction)
        elif method == "OPTIONS":
            endpoint.reply(
                transaction,
                200,
                headers=[
                    ("Allow", ALLOW),
                    ("Accept", "application/sdp"),
                    ("Supported", "path, outbound"),
                ],
            )
        elif method in KNOWN_METHODS:
            endpoint.reply(
                transaction, 405 if request.to_tag is None else 481, headers=[("Allow", ALLOW)]
            )
        else:
            endpoint.reply(transaction, 501, headers=[("Allow", ALLOW)])

    async def _register(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        assert self.registrar is not None
        outcome = await self.registrar.handle(request, transaction, flow)
        self.metrics.registrations.labels(outcome).inc()

    def on_ack(self, request: Request, flow: Flow) -> None:
        if self.b2bua is not None:
            self.b2bua.on_ack(request, flow)

    def on_cancel(self, invite: InviteServerTransaction, cancel: Request) -> None:
        if self.b2bua is not None:
            self.b2bua.on_cancel(invite)

    def on_response(self, response: Response, transaction: ClientTransaction) -> None:
        if self.b2bua is not None:
            self.b2bua.on_response(response, transaction)

    def on_timeout(self, transaction: Transaction) -> None:
        if self.b2bua is not None:
            self.b2bua.on_timeout(transaction)

    def on_connection_lost(self, connection: Connection) -> None:
        """A stream closed: the contacts registered through it are unreachable now."""
        if self._stopping or not connection.flow.connection:
            return
        task = asyncio.get_running_loop().create_task(self._forget_flow(connection.flow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget_flow(self, flow: Flow) -> None:
        try:
            removed = await self.location.remove_connection(flow.connection, self.instance)
        except Exception:
            log.exception("sip.flow_cleanup_failed", flow=str(flow))
            return
        if removed:
            log.info("sip.flow_closed", flow=str(flow), unregistered=[c.aor for c in removed])
