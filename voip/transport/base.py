"""What every transport shares: the flow a message came on and the connection contract."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

from voip.sip.message import Request, Response
from voip.sip.parser import InvalidMessage

RELIABLE = frozenset({"TCP", "TLS", "WS", "WSS"})

# Connection ids are unique per process; with the node name they identify a flow
# in the cluster, so a node can tell whether it holds a phone's connection.
_connection_ids = itertools.count(1)


def next_connection_id() -> int:
    return next(_connection_ids)


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from or goes to (RFC 5626's "flow"): transport and peer.

    ``connection`` is 0 for UDP; for streams it names the connection that carries the
    flow, so answers and in-dialog requests reuse it (phones behind NAT accept nothing else).
    """

    transport: str
    host: str
    port: int
    connection: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        suffix = f"#{self.connection}" if self.connection else ""
        return f"{self.transport.lower()}:{self.host}:{self.port}{suffix}"


class Connection(Protocol):
    """A stream (TCP, TLS, WebSocket) that the endpoint can write SIP messages to."""

    flow: Flow

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Receiver(Protocol):
    """The endpoint, as seen by transports."""

    def receive_datagram(self, data: bytes, flow: Flow) -> None:
        """A whole message from a datagram or a WebSocket frame, still unparsed."""

    def receive_message(self, message: Request | Response, flow: Flow) -> None:
        """A message a stream parser framed and validated."""

    def receive_invalid(self, invalid: InvalidMessage, flow: Flow) -> None:
        """A framed message whose mandatory headers are malformed."""

    def allow(self, flow: Flow) -> bool:
        """False when the source is banned: the transport drops it (and its connection)."""

    def connection_made(self, connection: Connection) -> None: ...

    def connection_lost(self, connection: Connection) -> None: ...
