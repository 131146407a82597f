from voip.sip.headers import Headers
from voip.sip.ids import MAGIC_COOKIE, new_branch, new_call_id, new_tag
from voip.sip.message import Request
from voip.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
    SendMessage,
    Terminated,
    TransactionTimeout,
    TransportError,
    build_ack,
    build_cancel,
)
from voip.sip.transaction_layer import TransactionLayer, client_key, server_key
from voip.sip.uri import parse_uri


def make_request(
    method: str = "INVITE", branch: str = "z9hG4bKabc", sent_by: str = "10.0.0.1:5060"
) -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP {sent_by};branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@a.example>;tag=ft"),
            ("To", "<sip:bob@b.example>"),
            ("Call-ID", "call-1"),
            ("CSeq", f"1 {method}"),
        ]
    )
    return Request(method, parse_uri("sip:bob@b.example"), headers)


def test_ids() -> None:
    assert new_branch().startswith(MAGIC_COOKIE) and new_branch() != new_branch()
    assert len(new_tag()) == 16
    assert new_call_id("h.example").endswith("@h.example") and "@" not in new_call_id()


def test_keys() -> None:
    invite = make_request()
    assert client_key(invite) == ("z9hG4bKabc", "INVITE")
    assert client_key(invite.response(180)) == ("z9hG4bKabc", "INVITE")
    assert server_key(invite) == ("z9hG4bKabc", "10.0.0.1:5060", "INVITE")
    ack = build_ack(invite, invite.response(486, to_tag="t"))
    assert server_key(ack) == server_key(invite)
    cancel = build_cancel(invite)
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel, "INVITE") == server_key(invite)
    other_host = make_request(sent_by="10.0.0.2:5060")
    assert server_key(other_host) != server_key(invite)


def test_rfc2543_keys() -> None:
    old = make_request(branch="1")
    key = server_key(old)
    assert key[0] == "rfc2543"
    ack = build_ack(old, old.response(486, to_tag="t"))
    assert server_key(ack) == key
    assert server_key(make_request("BYE", branch="1")) != key


def test_server_side_flow_with_retransmission_and_cancel() -> None:
    layer = TransactionLayer()
    invite = make_request()
    assert layer.receive_request(invite, 0.0) is None
    server = layer.create_server(invite, reliable=False, now=0.0)
    assert isinstance(server, InviteServerTransaction) and len(layer) == 1
    assert layer.next_deadline() == 0.2
    fired = layer.handle_timers(0.2)
    assert fired and fired[0][0] is server
    matched = layer.receive_request(invite, 0.3)
    assert matched is not None and matched[0] is server
    assert isinstance(matched[1][0], SendMessage)

    cancel = build_cancel(invite)
    assert layer.cancel_target(cancel) is server
    cancel_server = layer.create_server(cancel, reliable=False, now=0.4)
    assert isinstance(cancel_server, NonInviteServerTransaction) and len(layer) == 2
    layer.send_response(cancel_server, cancel.response(200), 0.4)
    terminated = invite.response(487, to_tag="x")
    layer.send_response(server, terminated, 0.4)
    ack = build_ack(invite, terminated)
    result = layer.receive_request(ack, 0.5)
    assert result is not None and result[0] is server
    assert layer.next_deadline() == 5.5  # timer I
    layer.handle_timers(5.5)
    assert len(layer) == 1
    layer.handle_timers(40.0)
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.match_request(cancel) is None


def test_client_side_flow_and_timeouts() -> None:
    layer = TransactionLayer()
    invite = make_request(branch=new_branch())
    client, events = layer.start_client(invite, reliable=False, now=0.0)
    assert isinstance(client, InviteClientTransaction) and events == [SendMessage(invite)]
    options = make_request("OPTIONS", branch=new_branch())
    options_client, _ = layer.start_client(options, reliable=False, now=0.1)
    assert layer.next_deadline() == 0.5
    assert layer.receive_response(make_request().response(200), 0.2) is None
    matched = layer.receive_response(invite.response(180), 0.2)
    assert matched is not None and matched[0] is client
    assert layer.next_deadline() == 0.6  # only the OPTIONS retransmission remains
    fired = layer.handle_timers(33.0)
    assert any(isinstance(e, TransactionTimeout) for _, evs in fired for e in evs)
    assert fired[-1][0] is options_client and fired[-1][1][-1] == Terminated()
    assert len(layer) == 1
    assert layer.transport_error(client) == [TransportError(), Terminated()]
    assert len(layer) == 0


def test_stale_heap_entries_are_skipped() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS", branch=new_branch())
    client, _ = layer.start_client(request, reliable=False, now=0.0)
    for now in (0.1, 0.2, 0.3):
        layer.receive_response(request.response(100), now)
    assert layer.next_deadline() == 0.5
    fired = layer.handle_timers(0.5)
    assert len(fired) == 1 and fired[0][0] is client
    layer.receive_response(request.response(200), 0.6)
    assert layer.next_deadline() == 5.6
    assert layer.handle_timers(5.6) == [(client, [Terminated()])]
    assert layer.next_deadline() is None
