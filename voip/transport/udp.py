"""SIP over UDP: one socket per listening address, datagrams handed to the endpoint."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import structlog

from .base import Flow, Receiver

log = structlog.get_logger("voip.udp")


# As Kamailio does at start: the largest socket buffers the kernel allows (up to this),
# so a burst that arrives while the loop is busy waits in the kernel instead of being
# dropped and retransmitted 500 ms later (Linux caps it at net.core.rmem_max/wmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024


def _enlarge_buffers(sock: socket.socket | None) -> None:
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError as exc:
            log.debug("udp.buffer_unchanged", option=int(option), error=str(exc))


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    @classmethod
    async def listen(cls, receiver: Receiver, host: str, port: int) -> UdpTransport:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(receiver), local_addr=(host, port)
        )
        # connection_made runs on the next loop turn; the caller needs the port now.
        protocol.connection_made(transport)
        _enlarge_buffers(transport.get_extra_info("socket"))
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._receiver.receive_datagram(data, Flow("UDP", str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction's timers deal with it.
        log.debug("udp.error", error=str(exc))

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, address)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
