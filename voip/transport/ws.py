"""SIP over WebSocket (RFC 7118) on the HTTP server's ``/sip`` route.

Each WebSocket message carries exactly one SIP message, so frames are parsed
like datagrams; the connection is reliable, so no retransmissions are needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from .base import Flow, Receiver, next_connection_id

PATH = "/sip"
MAX_FRAME = 65536


class WebSocketConnection:
    def __init__(self, ws: web.WebSocketResponse, flow: Flow) -> None:
        self._ws = ws
        self.flow = flow

    def send(self, data: bytes) -> None:
        if self._ws.closed:
            return
        # Tasks run in creation order, so messages leave in the order they were sent.
        asyncio.get_running_loop().create_task(self._send(data))

    async def _send(self, data: bytes) -> None:
        # Text frames: browsers' SIP stacks (JsSIP, SIP.js) expect them (RFC 7118 §4.2).
        try:
            await self._ws.send_str(data.decode("utf-8", "replace"))
        except (ConnectionError, RuntimeError):
            pass

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._ws.close())


def handler(receiver: Receiver) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def sip_websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("sip",), heartbeat=30.0, max_msg_size=MAX_FRAME)
        secure = request.secure
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host, port = (str(peer[0]), int(peer[1])) if peer else (request.remote or "", 0)
        flow = Flow("WSS" if secure else "WS", host, port, next_connection_id())
        if not receiver.allow(flow):
            raise web.HTTPForbidden()
        await ws.prepare(request)
        connection = WebSocketConnection(ws, flow)
        receiver.connection_made(connection)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    data = message.data.encode("utf-8")
                elif message.type is WSMsgType.BINARY:
                    data = message.data
                else:
                    continue
                receiver.receive_datagram(data, flow)
        finally:
            receiver.connection_lost(connection)
        return ws

    return sip_websocket
