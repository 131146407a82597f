"""The WebSocket hub: one endpoint per channel, one validated JSON message at a time.

The hub owns the socket: it authenticates nothing itself but hands each channel
the identity of the upgrade request (the console session cookie), parses every
frame with :mod:`signaling.protocol` and answers a bad one with an ``error``
message while the connection carries on. A peer that stops answering the
WebSocket heartbeat (a room PC that lost power) is closed after the channel's
timeout, and the channel is told, so nobody waits for a goodbye that never comes.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiohttp import WSMsgType, web

from core.auth import Identity, identity_of
from signaling.protocol import (
    MAX_MESSAGE_BYTES,
    ClientMessage,
    Error,
    ServerMessage,
    encode,
    parse_client_message,
)

log = structlog.get_logger("signaling")

_ids = itertools.count(1)


@dataclass(eq=False)
class Connection:
    """One signalling WebSocket; ``send`` never raises on a socket that went away."""

    ws: web.WebSocketResponse
    identity: Identity | None
    remote: str
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, message: ServerMessage) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(encode(message))
        except (ConnectionError, RuntimeError):
            log.debug("signaling.send_failed", connection=self.id)

    async def close(self, reason: str = "") -> None:
        if not self.ws.closed:
            await self.ws.close(message=reason.encode()[:120])


class Channel(Protocol):
    async def received(self, connection: Connection, message: ClientMessage) -> None: ...

    async def closed(self, connection: Connection, reason: str) -> None: ...


@dataclass
class _Mounted:
    channel: Channel
    timeout: float


class SignalingHub:
    def __init__(self) -> None:
        self._channels: dict[str, _Mounted] = {}
        self.connections: set[Connection] = set()
        self._cleanups: set[asyncio.Future[None]] = set()

    def add_channel(self, name: str, channel: Channel, *, timeout: float) -> None:
        """Serve ``channel`` at ``/signaling/<name>``; silent peers go after ``timeout`` s."""
        self._channels[name] = _Mounted(channel, timeout)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        mounted = self._channels.get(request.match_info["channel"])
        if mounted is None:
            raise web.HTTPNotFound(text="no such signalling channel")
        # aiohttp pings every `heartbeat` s and closes when no pong came within half
        # of it, so a vanished peer is gone after about 1.5 * heartbeat.
        ws = web.WebSocketResponse(
            heartbeat=mounted.timeout / 1.5, max_msg_size=MAX_MESSAGE_BYTES * 2
        )
        await ws.prepare(request)
        connection = Connection(ws, identity_of(request), request.remote or "")
        self.connections.add(connection)
        reason = "closed"
        try:
            async for frame in ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    message = parse_client_message(frame.data)
                    if isinstance(message, Error):
                        log.info(
                            "signaling.refused",
                            connection=connection.id,
                            code=message.code,
                            ref=message.ref,
                            source=connection.remote,
                        )
                        await connection.send(message)
                        continue
                    try:
                        await mounted.channel.received(connection, message)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("signaling.handler_failed", type=message.type)
                        await connection.send(
                            Error(code="state", message="internal error", ref=message.type)
                        )
                elif frame.type == WSMsgType.ERROR:
                    reason = "error"
            if ws.close_code == 1006 or (ws.close_code is None and reason != "error"):
                reason = "timeout"
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the peer's TCP connection is lost (with
            # handler_cancellation, as its TestServer runs) or at shutdown. The socket is
            # over either way and the 101 was sent: letting the cancellation escape made
            # core's metrics record the request as a 500.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            reason = "lost"
        finally:
            self.connections.discard(connection)
            # The channel's clean-up (closing peer connections, writing attendance) runs
            # as a task of its own, not awaited here: a cancellation arriving while the
            # handler waited for it would cut it short or escape as an error. ``drain``
            # waits for the ones still running at shutdown.
            cleanup = asyncio.ensure_future(mounted.channel.closed(connection, reason))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
        return ws

    async def drain(self) -> None:
        """Wait for the clean-ups of connections that have closed (at shutdown)."""
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)


__all__ = ["Channel", "Connection", "SignalingHub"]
