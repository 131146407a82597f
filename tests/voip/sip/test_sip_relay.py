"""The stateless relay between nodes: routes, Vias, branches, Record-Route."""

import pytest

from voip.sip.message import Request, Via
from voip.sip.parser import parse_message
from voip.sip.relay import (
    BRANCH_PREFIX,
    RelayRefused,
    forward_request,
    names_relay,
    next_hop,
    relay_uri,
    response_next_hop,
    stateless_branch,
)
from voip.sip.transaction import build_cancel
from voip.sip.uri import SipUri

A = "10.0.0.1"


def request(method: str = "INVITE", extra: str = "", to_tag: str = "") -> Request:
    tag = f";tag={to_tag}" if to_tag else ""
    text = (
        f"{method} sip:1002@192.0.2.9:5555;transport=ws SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnodeb1;rport=5060;received=10.0.0.2\r\n"
        f"{extra}"
        "Max-Forwards: 69\r\n"
        "From: <sip:1001@unicomm>;tag=b1\r\n"
        f"To: <sip:1002@unicomm>{tag}\r\n"
        "Call-ID: c1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_relay_uri_names_transport_and_connection() -> None:
    assert relay_uri(A, 5060, "UDP") == f"sip:{A}:5060;lr;uc-relay"
    assert relay_uri(A, 8080, "WS", 7) == f"sip:{A}:8080;transport=ws;lr;uc-relay=7"
    assert names_relay(f"<{relay_uri(A, 5060, 'UDP')}>") and not names_relay("<sip:x;lr>")
    assert not names_relay(None)


def test_no_route_of_ours_no_hop() -> None:
    assert next_hop(request(), host=A) is None
    other = request(extra="Route: <sip:10.9.9.9:5060;lr;uc-relay>\r\n")
    assert next_hop(other, host=A) is None  # another node's entry is not ours to pop


def test_initial_invite_from_a_node_is_forwarded_and_record_routed() -> None:
    invite = request(extra=f"Route: <{relay_uri(A, 5060, 'UDP')}>\r\n")
    hop = next_hop(invite, host=A)
    assert hop is not None and hop.ours == 1 and hop.connection == 0
    assert str(hop.uri) == "sip:1002@192.0.2.9:5555;transport=ws"
    via = Via("WS", A, 8080, {"branch": "replaced", "rport": None})
    towards_node, towards_phone = relay_uri(A, 5060, "UDP"), relay_uri(A, 8080, "WS", 3)
    forward_request(invite, hop, via=via, record_route=(towards_node, towards_phone))
    assert "Route" not in invite.headers
    assert invite.max_forwards == 68
    top = invite.top_via
    assert top.transport == "WS" and (top.branch or "").startswith(BRANCH_PREFIX)
    # The phone's route set is the Record-Route in order: its own side first.
    assert [str(r.uri) for r in invite.record_routes] == [towards_phone, towards_node]


def test_in_dialog_request_to_the_phone_names_the_connection() -> None:
    routes = f"Route: <{relay_uri(A, 5060, 'UDP')}>, <{relay_uri(A, 8080, 'WS', 12)}>\r\n"
    bye = request("BYE", routes, to_tag="p1")
    hop = next_hop(bye, host=A)
    assert hop is not None and hop.ours == 2 and hop.connection == 12
    forward_request(bye, hop, via=Via("WS", A, 8080, {}), record_route=("x", "y"))
    assert "Route" not in bye.headers and "Record-Route" not in bye.headers


def test_in_dialog_request_from_the_phone_goes_to_the_next_route_or_uri() -> None:
    routes = (
        f"Route: <{relay_uri(A, 8080, 'WS', 12)}>, <{relay_uri(A, 5060, 'UDP')}>,"
        " <sip:10.0.0.2:5060;lr>\r\n"
    )
    bye = request("BYE", routes, to_tag="p1")
    hop = next_hop(bye, host=A)
    assert hop is not None and hop.ours == 2 and hop.connection == 0
    assert isinstance(hop.uri, SipUri) and hop.uri.host == "10.0.0.2"


def test_cancel_gets_the_branch_of_the_invite_it_cancels() -> None:
    invite = request()
    assert stateless_branch(build_cancel(invite)) == stateless_branch(invite)
    other = request()
    other.headers.set("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnodeb2")
    assert stateless_branch(other) != stateless_branch(invite)


def test_hop_limit() -> None:
    invite = request(extra=f"Route: <{relay_uri(A, 5060, 'UDP')}>\r\n")
    invite.headers.set("Max-Forwards", "1")
    hop = next_hop(invite, host=A)
    assert hop is not None
    with pytest.raises(RelayRefused) as refused:
        forward_request(invite, hop, via=Via("WS", A, 8080, {}))
    assert refused.value.status == 483


def test_responses_to_relayed_requests_lose_our_via() -> None:
    invite = request(extra=f"Route: <{relay_uri(A, 5060, 'UDP')}>\r\n")
    hop = next_hop(invite, host=A)
    assert hop is not None
    forward_request(invite, hop, via=Via("WS", A, 8080, {}))
    ringing = invite.response(180, to_tag="p1")
    hop = response_next_hop(ringing, host=A)
    assert hop is not None and hop.connection == 0
    assert hop.via.host == "10.0.0.2" and hop.via.rport == 5060
    assert len(ringing.vias) == 1
    # Not relayed by us (no Via of ours on top): left alone.
    assert response_next_hop(request().response(200), host=A) is None


def test_a_request_from_our_connection_is_answered_down_it() -> None:
    routes = f"Route: <{relay_uri(A, 8080, 'WS', 12)}>, <{relay_uri(A, 5060, 'UDP')}>\r\n"
    bye = request("BYE", routes, to_tag="p1")
    bye.headers.set("Via", "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKws1")
    hop = next_hop(bye, host=A)
    assert hop is not None
    forward_request(bye, hop, via=Via("UDP", A, 5060, {}), source_connection=12)
    answer = response_next_hop(bye.response(200), host=A)
    assert answer is not None and answer.connection == 12
    assert answer.via.host == "df7jal23ls0d.invalid"
