"""The RTP relay: media of anchored calls (the trunk) flows through the exchange.

Each relayed call has two UDP sockets: the inside one faces the phone (on the
exchange's advertised address), the outside one faces the carrier (on the public
address). A datagram arriving on one side leaves from the other, towards the
peer the SDP named, or better the address the peer's own packets come from
(symmetric RTP latching, which also gets through the peer's NAT).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from .sdp_anchor import try_anchor

log = structlog.get_logger("voip.rtp_relay")

Address = tuple[str, int]


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: RelayedCall, name: str) -> None:
        self.relay = relay
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: Address | None = None  # from the SDP, then the latched source
        self.latched = False
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received += 1
        if not self.latched and (self.peer is None or self.peer[0] == addr[0]):
            # The first packet from the expected host fixes where the peer really is.
            self.peer = addr
            self.latched = True
        elif addr != self.peer:
            return  # not our peer: dropped (no relay for strangers)
        self.relay.forward(self, data)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))


@dataclass(eq=False)
class RelayedCall:
    relay: RtpRelay
    inside: _Side = field(init=False)
    outside: _Side = field(init=False)
    closed: bool = False

    def __post_init__(self) -> None:
        self.inside = _Side(self, "inside")
        self.outside = _Side(self, "outside")

    def forward(self, side: _Side, data: bytes) -> None:
        other = self.outside if side is self.inside else self.inside
        if other.peer is None or other.transport is None:
            return
        other.transport.sendto(data, other.peer)
        self.relay.packets.inc()

    def rewrite_outward(self, body: bytes) -> bytes:
        """SDP from the phone, towards the carrier: our outside address, learn the phone's."""
        return self._rewrite(body, described_by=self.inside, shown=self.outside)

    def rewrite_inward(self, body: bytes) -> bytes:
        """SDP from the carrier, towards the phone: our inside address, learn the carrier's."""
        return self._rewrite(body, described_by=self.outside, shown=self.inside)

    def _rewrite(self, body: bytes, *, described_by: _Side, shown: _Side) -> bytes:
        host, port = shown.address
        anchored = try_anchor(body, host, port)
        if anchored is None:
            # Not SDP we can read: never pass through what might hold an address.
            return b""
        if anchored.peer is not None and not described_by.latched:
            described_by.peer = anchored.peer
        return anchored.body

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.inside, self.outside):
            if side.transport is not None:
                side.transport.close()
        self.relay.active.dec()


class RtpRelay:
    def __init__(self, *, inside_host: str, outside_host: str, registry: CollectorRegistry):
        self.inside_host = inside_host
        self.outside_host = outside_host
        self.calls: set[RelayedCall] = set()
        self.packets = Counter("unicomm_rtp_relayed", "RTP datagrams relayed", registry=registry)
        self.active = Gauge("unicomm_rtp_relay_calls", "Calls relayed now", registry=registry)

    async def open(self) -> RelayedCall:
        loop = asyncio.get_running_loop()
        call = RelayedCall(self)
        await loop.create_datagram_endpoint(lambda: call.inside, local_addr=(self.inside_host, 0))
        await loop.create_datagram_endpoint(lambda: call.outside, local_addr=(self.outside_host, 0))
        self.active.inc()
        self.calls.add(call)
        return call

    def close(self, call: RelayedCall) -> None:
        self.calls.discard(call)
        call.close()

    def close_all(self) -> None:
        for call in list(self.calls):
            self.close(call)
