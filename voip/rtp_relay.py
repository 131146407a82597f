"""The RTP relay: media of anchored calls (the trunk) flows through the exchange.

Each relayed call has two sides: the inside one faces the phone (on the
exchange's advertised address), the outside one faces the carrier (on the public
address). A datagram arriving on one side leaves from the other, towards the
peer the SDP named, or better the address the peer's own packets come from
(symmetric RTP latching, which also gets through the peer's NAT).

Each side is a pair of sockets, RTP on an even port and RTCP on the next one
(RFC 3550 §11), so receiver reports and BYEs cross the relay as well; RTCP goes
where the peer's ``a=rtcp`` says, or to its RTP port + 1. A session description
naming a new address for a side (a transfer moved the caller to another phone, a
worker handed it on) points that side at the new peer and latches again.

What each side shows in ``o=`` stays one session (RFC 3264 §8): the same session
id for the whole call and a version that goes up only when the description changes,
whichever phone is behind the relay at the time.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from dataclasses import dataclass, field
from typing import Protocol, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from .sdp_anchor import try_anchor

log = structlog.get_logger("voip.rtp_relay")

Address = tuple[str, int]


class PacketSink(Protocol):
    def packet(self, direction: int, data: bytes) -> None: ...


_ORIGIN = re.compile(rb"^o=unicomm \S+ \S+ ", re.MULTILINE)
_PAIR_ATTEMPTS = 64


class _Socket(asyncio.DatagramProtocol):
    """One port of a side (its RTP or its RTCP): latches on its peer, forwards to the twin."""

    def __init__(self, relay: RelayedCall, side: _Side, kind: str) -> None:
        self.relay = relay
        self.side = side
        self.kind = kind  # "rtp" or "rtcp"
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: Address | None = None  # from the SDP, then the latched source
        self.described: Address | None = None  # what the last SDP of this side named
        self.previous: Address | None = None  # the peer before the last re-pointing
        self.latched = False
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received += 1
        if addr == self.previous:
            return  # the peer this side had before a transfer: its last packets go nowhere
        if not self.latched and (self.peer is None or self.peer[0] == addr[0]):
            # The first packet from the expected host fixes where the peer really is.
            self.peer = addr
            self.latched = True
        elif addr != self.peer:
            return  # not our peer: dropped (no relay for strangers)
        self.relay.forward(self, data)

    def describe(self, peer: Address | None) -> None:
        """The side's SDP named ``peer``: a new address is the new peer, latched afresh."""
        if peer is None or peer == self.described:
            return  # on hold (c=0.0.0.0), or the same as before: keep the latch
        if self.peer is not None and self.peer != peer:
            self.previous = self.peer
        self.described = peer
        self.peer = peer
        self.latched = False

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))


class _Side:
    def __init__(self, relay: RelayedCall, name: str) -> None:
        self.name = name
        self.rtp = _Socket(relay, self, "rtp")
        self.rtcp = _Socket(relay, self, "rtcp")
        # What this side shows in o= (RFC 3264 §8): one session id, versions going up.
        self.session_id = str(secrets.randbelow(2**31) + 1)
        self.version = 0
        self._shown: bytes | None = None

    @property
    def address(self) -> Address:
        return self.rtp.address

    @property
    def peer(self) -> Address | None:
        return self.rtp.peer

    @property
    def latched(self) -> bool:
        return self.rtp.latched

    @property
    def received(self) -> int:
        return self.rtp.received

    def origin(self, body: bytes) -> bytes:
        """``body`` with this side's own session id and version in its o= line."""
        unversioned = _ORIGIN.sub(b"o=unicomm - - ", body, count=1)
        if unversioned != self._shown:
            self._shown = unversioned
            self.version += 1
        return _ORIGIN.sub(f"o=unicomm {self.session_id} {self.version} ".encode(), body, count=1)

    def close(self) -> None:
        for port in (self.rtp, self.rtcp):
            if port.transport is not None:
                port.transport.close()


@dataclass(eq=False)
class RelayedCall:
    relay: RtpRelay
    inside: _Side = field(init=False)
    outside: _Side = field(init=False)
    closed: bool = False
    # Told every RTP datagram and its direction: 0 from the inside (the caller's side of
    # the route), 1 from the outside (call recording, voip.features.recording).
    recorder: PacketSink | None = None

    def __post_init__(self) -> None:
        self.inside = _Side(self, "inside")
        self.outside = _Side(self, "outside")

    def forward(self, port: _Socket, data: bytes) -> None:
        other_side = self.outside if port.side is self.inside else self.inside
        other = other_side.rtp if port.kind == "rtp" else other_side.rtcp
        if self.recorder is not None and port.kind == "rtp":
            self.recorder.packet(0 if port.side is self.inside else 1, data)
        if other.peer is None or other.transport is None:
            return
        other.transport.sendto(data, other.peer)
        (self.relay.packets if port.kind == "rtp" else self.relay.rtcp_packets).inc()

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
        described_by.rtp.describe(anchored.peer)
        described_by.rtcp.describe(anchored.rtcp_peer)
        return shown.origin(anchored.body)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inside.close()
        self.outside.close()
        self.relay.active.dec()


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on ``host``: an even port for RTP and the next one for RTCP."""
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_DGRAM)[0][0]
    for _ in range(_PAIR_ATTEMPTS):
        first = socket.socket(family, socket.SOCK_DGRAM)
        first.bind((host, 0))
        port = first.getsockname()[1]
        partner_port = port + 1 if port % 2 == 0 else port - 1
        second = socket.socket(family, socket.SOCK_DGRAM)
        try:
            second.bind((host, partner_port))
        except OSError:
            first.close()
            second.close()
            continue
        return (first, second) if port % 2 == 0 else (second, first)
    raise OSError(f"no free RTP/RTCP port pair on {host}")


class RtpRelay:
    def __init__(self, *, inside_host: str, outside_host: str, registry: CollectorRegistry):
        self.inside_host = inside_host
        self.outside_host = outside_host
        self.calls: set[RelayedCall] = set()
        self.packets = Counter("unicomm_rtp_relayed", "RTP datagrams relayed", registry=registry)
        self.rtcp_packets = Counter(
            "unicomm_rtcp_relayed", "RTCP datagrams relayed", registry=registry
        )
        self.active = Gauge("unicomm_rtp_relay_calls", "Calls relayed now", registry=registry)

    async def open(self, *, outside_host: str | None = None) -> RelayedCall:
        """A relayed call; ``outside_host`` (the inside host: an internal call) overrides."""
        loop = asyncio.get_running_loop()
        call = RelayedCall(self)
        opened: list[asyncio.BaseTransport] = []
        outside = outside_host or self.outside_host
        try:
            for side, host in ((call.inside, self.inside_host), (call.outside, outside)):
                rtp, rtcp = _bind_pair(host)
                for port, sock in ((side.rtp, rtp), (side.rtcp, rtcp)):
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda port=port: port,  # type: ignore[misc]
                        sock=sock,
                    )
                    opened.append(transport)
        except BaseException:
            for opened_transport in opened:
                opened_transport.close()
            raise
        self.active.inc()
        self.calls.add(call)
        return call

    def close(self, call: RelayedCall) -> None:
        self.calls.discard(call)
        call.close()

    def close_all(self) -> None:
        for call in list(self.calls):
            self.close(call)
