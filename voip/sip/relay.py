"""Relaying requests through the node that holds a phone's connection (sans-I/O).

A phone registered over TCP, TLS or WebSocket can only be reached down its own
connection (RFC 5626 §5.3, RFC 7118 §5), which one node holds. Another node sends
such a phone's INVITE to that node with a Route naming it; the holder forwards the
request down the connection as a stateless proxy (RFC 3261 §16.11) and
record-routes itself twice (one entry facing each side, RFC 5658), so the rest of
the dialog takes the same path both ways and responses go back along the Vias.

Our own Route and Record-Route entries carry the ``uc-relay`` parameter; the entry
facing the phone names the connection (``uc-relay=<id>``), so an in-dialog request
towards the phone needs no lookup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import SipParseError
from .message import Request, Response, Via
from .uri import NameAddr, SipUri, Uri, parse_name_addr

RELAY_PARAM = "uc-relay"
# Branches of requests we relay: a response with this branch in its top Via is relayed.
BRANCH_PREFIX = "z9hG4bK-ucr-"


def relay_uri(host: str, port: int, transport: str, connection: int = 0) -> str:
    """A Route/Record-Route URI naming this node on ``transport`` (loose routing)."""
    suffix = "" if transport.upper() == "UDP" else f";transport={transport.lower()}"
    value = f"={connection}" if connection else ""
    return f"sip:{host}:{port}{suffix};lr;{RELAY_PARAM}{value}"


def names_relay(route_header: str | None) -> bool:
    """A cheap first test, before any parsing: might this request be one to relay?"""
    return route_header is not None and RELAY_PARAM in route_header


def stateless_branch(request: Request) -> str:
    """The branch for our Via, derived from the incoming one (RFC 3261 §16.11).

    A CANCEL or the ACK of a non-2xx carry the INVITE's branch, so they get the same
    one as the INVITE we forwarded and match its transaction at the phone.
    """
    top = request.top_via
    digest = hashlib.sha256(f"{top.branch}|{top.sent_by}".encode()).hexdigest()[:24]
    return BRANCH_PREFIX + digest


@dataclass(frozen=True, slots=True)
class Hop:
    """Where a relayed request goes next."""

    ours: int  # how many of the top Route entries name this node
    connection: int  # a connection of ours named by the last of them (0: none)
    uri: Uri  # otherwise: the next Route, else the Request-URI


class RelayRefused(SipParseError):
    """A request that names us as a relay but cannot be forwarded."""


def next_hop(request: Request, *, host: str) -> Hop | None:
    """Where a request whose top Route names this node (``host``) goes; None if none does."""
    routes = request.routes
    ours = 0
    connection = 0
    for route in routes:
        uri = route.uri
        if not (isinstance(uri, SipUri) and RELAY_PARAM in uri.params and uri.host == host):
            break
        ours += 1
        # The last of our entries is the one facing where the request goes.
        value = uri.params.get(RELAY_PARAM) or ""
        connection = int(value) if value.isdigit() else 0
    if not ours:
        return None
    remaining = routes[ours:]
    return Hop(ours, connection, remaining[0].uri if remaining else request.uri)


def forward_request(
    request: Request,
    hop: Hop,
    *,
    via: Via,
    record_route: tuple[str, str] | None = None,
    source_connection: int = 0,
) -> None:
    """Turn ``request`` (in place) into the one to forward to ``hop``.

    Our Route entries are removed, Max-Forwards decremented, our Via added with a
    stateless branch (naming ``source_connection``, the connection of ours it came on),
    and a dialog-creating INVITE gets ``record_route`` = (entry facing the sender,
    entry facing the receiver).
    """
    max_forwards = request.max_forwards
    if max_forwards is not None and max_forwards <= 1:
        raise RelayRefused("too many hops", 483)
    for _ in range(hop.ours):
        request.headers.remove_first("Route")
    request.headers.set("Max-Forwards", str((max_forwards or 70) - 1))
    via.params["branch"] = stateless_branch(request)
    if source_connection:
        via.params[CONNECTION_PARAM] = str(source_connection)
    request.headers.prepend("Via", str(via))
    if record_route is not None and request.method == "INVITE" and request.to_tag is None:
        towards_sender, towards_receiver = record_route
        request.headers.prepend("Record-Route", f"<{towards_sender}>")
        request.headers.prepend("Record-Route", f"<{towards_receiver}>")


# On our Via of a request relayed from one of our connections: which one, so the
# response goes back down it whatever the sender wrote in its own Via (a WebSocket
# client's is a made-up ``*.invalid`` host, RFC 7118 §5.2).
CONNECTION_PARAM = "uc-conn"


@dataclass(frozen=True, slots=True)
class ResponseHop:
    via: Via  # the next Via: where the response goes
    connection: int  # the connection of ours the request came on (0: none)


def response_next_hop(response: Response, *, host: str) -> ResponseHop | None:
    """For a response to a request we relayed: remove our Via, say where it goes next."""
    vias = response.vias
    if len(vias) < 2:
        return None
    top = vias[0]
    if top.host != host or not (top.branch or "").startswith(BRANCH_PREFIX):
        return None
    response.headers.remove_first("Via")
    value = top.params.get(CONNECTION_PARAM) or ""
    return ResponseHop(vias[1], int(value) if value.isdigit() else 0)


def route_to(host: str, port: int) -> NameAddr:
    """The Route a node puts on a request for a phone whose connection ``host`` holds."""
    return parse_name_addr(f"<{relay_uri(host, port, 'UDP')}>")
