"""SIP over TCP and TLS: Content-Length framing, CRLF keep-alives, connection reuse."""

from __future__ import annotations

import asyncio
import ssl

import structlog

from voip.sip.errors import SipParseError
from voip.sip.parser import InvalidMessage, KeepAlivePing, KeepAlivePong, StreamParser

from .base import Flow, Receiver, next_connection_id

log = structlog.get_logger("voip.stream")

# A stream transport must carry what a datagram can, plus a margin for big bodies.
MAX_STREAM_MESSAGE = 65536
# Idle connections are closed after this long; phones keep theirs alive with
# CRLF pings or re-registrations well within it.
IDLE_TIMEOUT = 600.0


class StreamConnection(asyncio.Protocol):
    def __init__(self, receiver: Receiver, transport_name: str) -> None:
        self._receiver = receiver
        self._name = transport_name
        self._transport: asyncio.Transport | None = None
        self._parser = StreamParser(MAX_STREAM_MESSAGE)
        self.flow = Flow(transport_name, "", 0)
        self._idle: asyncio.TimerHandle | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.flow = Flow(self._name, str(peer[0]), int(peer[1]), next_connection_id())
        if not self._receiver.allow(self.flow):
            transport.abort()
            return
        self._receiver.connection_made(self)
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            events = self._parser.feed(data)
        except SipParseError as error:
            # The stream cannot be resynchronised after a framing error (RFC 3261 §18.3).
            log.info("stream.bad_framing", flow=str(self.flow), error=str(error))
            self.close()
            return
        for event in events:
            if isinstance(event, KeepAlivePing):
                self.send(b"\r\n")
            elif isinstance(event, KeepAlivePong):
                continue
            elif isinstance(event, InvalidMessage):
                self._receiver.receive_invalid(event, self.flow)
            else:
                self._receiver.receive_message(event, self.flow)
            if self._transport is None or self._transport.is_closing():
                return

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.flow.connection:
            self._receiver.connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class StreamListener:
    """A TCP or TLS listening socket whose connections all feed one endpoint."""

    def __init__(self, server: asyncio.Server, name: str) -> None:
        self._server = server
        self.name = name
        sockname = server.sockets[0].getsockname()
        self.local: tuple[str, int] = (sockname[0], sockname[1])

    @classmethod
    async def listen(
        cls,
        receiver: Receiver,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> StreamListener:
        name = "TLS" if tls is not None else "TCP"
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: StreamConnection(receiver, name), host, port, ssl=tls, reuse_address=True
        )
        return cls(server, name)

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def connect(
    receiver: Receiver, host: str, port: int, *, tls: ssl.SSLContext | None = None
) -> StreamConnection:
    """Open a connection to a phone whose own connection is gone (it listens on its Contact)."""
    name = "TLS" if tls is not None else "TCP"
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(lambda: StreamConnection(receiver, name), host, port, ssl=tls),
        timeout=5.0,
    )
    return protocol
