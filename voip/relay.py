"""The asyncio side of relaying between nodes (the protocol is in voip.sip.relay).

Node B calls a phone whose TCP/WebSocket connection node A holds: B sends the INVITE
to A with a Route naming A; A forwards it down the connection. Only the nodes of the
cluster (their addresses are published in the shared state) may ask a node to reach
one of its connections, and a node relays to its connections or to other nodes only:
it is never an open relay.
"""

from __future__ import annotations

import asyncio

import structlog

from voip.sip.errors import SipParseError
from voip.sip.message import Request, Response
from voip.sip.relay import (
    Hop,
    forward_request,
    names_relay,
    next_hop,
    relay_uri,
    response_next_hop,
)
from voip.sip.uri import SipUri

from .endpoint import SipEndpoint
from .location import Location
from .transport.base import Flow

log = structlog.get_logger("voip.relay")

# A request for one of our connections from an address that is not a known node makes
# us re-read the node list, at most this often (a node that has just started is found
# by the time its INVITE is retransmitted, 500 ms later).
_REFRESH_SECONDS = 0.2
# What another node sends us without a Route: a call's INVITE, its CANCEL, the ACK
# of a failure (the rest of the dialog follows our Record-Route).
_FIRST_HOP_METHODS = frozenset({"INVITE", "CANCEL", "ACK"})


class NodeRelay:
    def __init__(self, endpoint: SipEndpoint, location: Location) -> None:
        self._endpoint = endpoint
        self._location = location
        self._nodes: set[tuple[str, int]] = set()
        self._loop = asyncio.get_running_loop()
        self._refreshed = -_REFRESH_SECONDS
        self._refreshing: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        nodes: set[tuple[str, int]] = set()
        for address in await self._location.node_addresses():
            host, _, port = address.rpartition(":")
            if port.isdigit():
                nodes.add((host, int(port)))
        self._nodes = nodes
        self._refreshed = self._loop.time()

    def _is_node(self, host: str, port: int) -> bool:
        if (host, port) in self._nodes:
            return True
        idle = self._refreshing is None or self._refreshing.done()
        if idle and self._loop.time() - self._refreshed > _REFRESH_SECONDS:
            self._refreshing = self._loop.create_task(self.refresh())
        return False

    def take_request(self, request: Request, flow: Flow) -> bool:
        """Relay ``request`` if it is for one of our connections or names us in its Route.

        True when it was ours to take (forwarded or refused), False for the usual path.
        """
        endpoint = self._endpoint
        host = endpoint.advertised_host
        if names_relay(request.headers.get("Route")):
            try:
                hop = next_hop(request, host=host)
            except SipParseError:
                return False
            if hop is None:
                return False
        elif request.method in _FIRST_HOP_METHODS:
            # Another node's INVITE (or CANCEL, ACK) for a contact one of our
            # connections carries: the Request-URI is the registered contact.
            connection = self._location.local_connection(str(request.uri))
            if not connection:
                return False
            if not self._is_node(flow.host, flow.port):
                # Phones call extensions, not each other's contacts: this is a node
                # we do not know yet (the list is being re-read) or a stranger. Drop
                # it; a node's retransmission comes back after the re-read.
                log.info("sip.relay_refused", method=request.method, source=str(flow))
                return True
            hop = Hop(0, connection, request.uri)
        else:
            return False
        target = self._target(hop, flow)
        if target is None:
            log.info("sip.relay_refused", method=request.method, source=str(flow))
            return True
        ports = endpoint.ports
        record_route = (
            relay_uri(host, ports.get(flow.transport, 0), flow.transport, flow.connection),
            relay_uri(host, ports.get(target.transport, 0), target.transport, target.connection),
        )
        try:
            forward_request(
                request,
                hop,
                via=endpoint.via(target.transport),
                record_route=record_route,
                source_connection=flow.connection,
            )
        except SipParseError as error:
            log.info("sip.relay_refused", method=request.method, error=str(error))
            return True
        endpoint.send(request, target)
        return True

    def _target(self, hop: Hop, source: Flow) -> Flow | None:
        """The flow to forward on: one of our connections for a node, or a node."""
        connection = hop.connection
        uri = hop.uri
        if not connection and isinstance(uri, SipUri):
            connection = self._location.local_connection(str(uri))
        if connection:
            held = self._endpoint.connections.get(connection)
            if held is None or not self._is_node(source.host, source.port):
                return None
            return held.flow
        if isinstance(uri, SipUri) and uri.port and self._is_node(uri.host, uri.port):
            return Flow("UDP", uri.host, uri.port)
        return None

    def take_response(self, response: Response) -> None:
        """A response no transaction of ours wanted: relay it if it answers a relayed request."""
        try:
            hop = response_next_hop(response, host=self._endpoint.advertised_host)
        except SipParseError:
            return
        if hop is None:
            return
        if hop.connection:
            connection = self._endpoint.connections.get(hop.connection)
            if connection is not None:
                connection.send(bytes(response))
            return
        via = hop.via
        if via.transport.upper() == "UDP":
            port = via.rport or via.port or 5060
            self._endpoint.send(response, Flow("UDP", via.received or via.host, port))
