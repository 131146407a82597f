import pytest

from voip.sip.errors import SipStateError
from voip.sip.headers import Headers
from voip.sip.message import Request, Response
from voip.sip.parser import parse_message
from voip.sip.transaction import (
    DeliverRequest,
    DeliverResponse,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    SendMessage,
    State,
    Terminated,
    TimerSettings,
    Transaction,
    TransactionTimeout,
    TransportError,
    build_ack,
    build_cancel,
)
from voip.sip.uri import parse_uri


def make_request(method: str = "INVITE", branch: str = "z9hG4bKtest") -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"),
            ("Route", "<sip:proxy.example;lr>"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@a.example>;tag=ft"),
            ("To", "<sip:bob@b.example>"),
            ("Call-ID", "call-1"),
            ("CSeq", f"1 {method}"),
        ]
    )
    return Request(method, parse_uri("sip:bob@b.example"), headers)


def sends(events: list[Event]) -> list[Request | Response]:
    return [e.message for e in events if isinstance(e, SendMessage)]


def retransmit_times(
    transaction: Transaction, start: float, until: float, step: float = 0.01
) -> list[float]:
    """Drive the machine with a fake clock; record when it sends something."""
    times: list[float] = []
    now = start
    while now < until and not transaction.terminated:
        deadline = transaction.next_deadline()
        if deadline is None or deadline > until:
            break
        now = deadline
        if sends(transaction.handle_timer(now)):
            times.append(round(now, 6))
    return times


def test_invite_client_timer_a_doubles_and_b_times_out() -> None:
    invite = make_request()
    transaction = InviteClientTransaction(invite, reliable=False)
    assert sends(transaction.start(0.0)) == [invite]
    times = retransmit_times(transaction, 0.0, 31.9)
    # Timer A is not capped at T2 for INVITE: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5.
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert transaction.next_deadline() == 32.0
    events = transaction.handle_timer(32.0)
    assert events == [TransactionTimeout(), Terminated()]
    assert transaction.terminated and transaction.next_deadline() is None


def test_invite_client_reliable_has_no_timer_a() -> None:
    transaction = InviteClientTransaction(make_request(), reliable=True)
    transaction.start(0.0)
    assert transaction.next_deadline() == 32.0


def test_invite_client_non_2xx_is_acked_and_absorbed() -> None:
    invite = make_request()
    transaction = InviteClientTransaction(invite, reliable=False)
    transaction.start(0.0)
    ringing = invite.response(180, to_tag="tt")
    assert transaction.receive(ringing, 0.2) == [DeliverResponse(ringing)]
    assert transaction.state is State.PROCEEDING
    assert transaction.next_deadline() is None  # no retransmission, no timer B
    busy = invite.response(486, to_tag="tt")
    events = transaction.receive(busy, 1.0)
    (ack,) = sends(events)
    assert events[1] == DeliverResponse(busy)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.to_tag == "tt" and ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert (
        ack.top_via.branch == "z9hG4bKtest" and ack.headers.get("Route") == "<sip:proxy.example;lr>"
    )
    assert str(ack.uri) == "sip:bob@b.example"
    assert transaction.state is State.COMPLETED
    # A retransmitted 486 is answered with the same ACK and not delivered again.
    assert transaction.receive(busy, 2.0) == [SendMessage(ack)]
    assert transaction.next_deadline() == 33.0
    assert transaction.handle_timer(33.0) == [Terminated()]
    assert transaction.receive(busy, 34.0) == []


def test_invite_client_reliable_terminates_after_ack() -> None:
    invite = make_request()
    transaction = InviteClientTransaction(invite, reliable=True)
    transaction.start(0.0)
    events = transaction.receive(invite.response(404), 0.1)
    assert isinstance(events[0], SendMessage) and events[-1] == Terminated()


def test_invite_client_2xx_accepted_state() -> None:
    invite = make_request()
    transaction = InviteClientTransaction(invite, reliable=False)
    transaction.start(0.0)
    ok = invite.response(200, to_tag="tt")
    assert transaction.receive(ok, 0.1) == [DeliverResponse(ok)]
    assert transaction.state is State.ACCEPTED
    assert transaction.receive(ok, 0.6) == [DeliverResponse(ok)]
    assert transaction.receive(invite.response(180), 0.7) == []
    assert transaction.next_deadline() == pytest.approx(32.1)
    assert transaction.handle_timer(32.1) == [Terminated()]


def test_invite_client_transport_error() -> None:
    transaction = InviteClientTransaction(make_request(), reliable=False)
    transaction.start(0.0)
    assert transaction.transport_error() == [TransportError(), Terminated()]
    assert transaction.transport_error() == []


def test_non_invite_client_timer_e_caps_at_t2_and_f_times_out() -> None:
    transaction = NonInviteClientTransaction(make_request("OPTIONS"), reliable=False)
    transaction.start(0.0)
    times = retransmit_times(transaction, 0.0, 31.99)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert transaction.handle_timer(32.0) == [TransactionTimeout(), Terminated()]


def test_non_invite_client_proceeding_uses_t2() -> None:
    request = make_request("REGISTER")
    transaction = NonInviteClientTransaction(request, reliable=False)
    transaction.start(0.0)
    transaction.handle_timer(0.5)  # next E at 1.5
    trying = request.response(100)
    assert transaction.receive(trying, 0.6) == [DeliverResponse(trying)]
    assert transaction.next_deadline() == 1.5
    assert sends(transaction.handle_timer(1.5)) == [request]
    assert transaction.next_deadline() == 5.5
    ok = request.response(200)
    assert transaction.receive(ok, 2.0) == [DeliverResponse(ok)]
    assert transaction.receive(ok, 2.1) == []
    assert transaction.next_deadline() == 7.0  # timer K = T4
    assert transaction.handle_timer(7.0) == [Terminated()]


def test_non_invite_client_reliable() -> None:
    request = make_request("BYE")
    transaction = NonInviteClientTransaction(request, reliable=True)
    transaction.start(0.0)
    assert transaction.next_deadline() == 32.0
    assert transaction.receive(request.response(200), 0.1)[-1] == Terminated()


def test_custom_timers() -> None:
    timers = TimerSettings(t1=0.1, t2=0.4, t4=1.0)
    transaction = NonInviteClientTransaction(make_request("OPTIONS"), reliable=False, timers=timers)
    transaction.start(0.0)
    assert retransmit_times(transaction, 0.0, 1.5) == [0.1, 0.3, 0.7, 1.1, 1.5]
    assert transaction.handle_timer(6.4)[-1] == Terminated()


def test_late_wakeup_fires_all_due_timers_in_order() -> None:
    transaction = NonInviteClientTransaction(make_request("OPTIONS"), reliable=False)
    transaction.start(0.0)
    events = transaction.handle_timer(40.0)
    assert len(sends(events)) == 10
    assert events[-2:] == [TransactionTimeout(), Terminated()]


def test_invite_server_sends_trying_after_200ms() -> None:
    invite = make_request()
    transaction = InviteServerTransaction(invite, reliable=False, now=0.0)
    assert transaction.next_deadline() == pytest.approx(0.2)
    (trying,) = sends(transaction.handle_timer(0.2))
    assert isinstance(trying, Response) and trying.status == 100
    assert sends(transaction.receive(invite, 0.5)) == [trying]


def test_invite_server_tu_provisional_suppresses_trying() -> None:
    invite = make_request()
    transaction = InviteServerTransaction(invite, reliable=False, now=0.0)
    assert transaction.receive(invite, 0.05) == []
    ringing = invite.response(180, to_tag="x")
    assert transaction.send(ringing, 0.1) == [SendMessage(ringing)]
    assert transaction.next_deadline() is None
    assert transaction.receive(invite, 0.5) == [SendMessage(ringing)]


def test_invite_server_retransmits_final_until_ack() -> None:
    invite = make_request()
    transaction = InviteServerTransaction(invite, reliable=False, now=0.0)
    busy = invite.response(486, to_tag="x")
    assert transaction.send(busy, 0.0) == [SendMessage(busy)]
    assert transaction.state is State.COMPLETED
    assert retransmit_times(transaction, 0.0, 8.0) == [0.5, 1.5, 3.5, 7.5]
    assert transaction.receive(invite, 8.0) == [SendMessage(busy)]
    ack = build_ack(invite, busy)
    assert transaction.receive(ack, 8.1) == []
    assert transaction.state is State.CONFIRMED
    assert transaction.next_deadline() == pytest.approx(13.1)
    assert transaction.receive(ack, 9.0) == [] and transaction.receive(invite, 9.0) == []
    assert transaction.handle_timer(13.1) == [Terminated()]


def test_invite_server_timer_h_without_ack() -> None:
    invite = make_request()
    transaction = InviteServerTransaction(invite, reliable=False, now=0.0)
    transaction.send(invite.response(500), 0.0)
    times = retransmit_times(transaction, 0.0, 31.99)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert transaction.handle_timer(32.0) == [TransactionTimeout(), Terminated()]


def test_invite_server_reliable_confirmed_terminates() -> None:
    invite = make_request()
    transaction = InviteServerTransaction(invite, reliable=True, now=0.0)
    busy = invite.response(486)
    transaction.send(busy, 0.0)
    assert transaction.next_deadline() == 32.0
    assert transaction.receive(build_ack(invite, busy), 0.1) == [Terminated()]


def test_invite_server_2xx_accepted() -> None:
    invite = make_request()
    transaction = InviteServerTransaction(invite, reliable=False, now=0.0)
    ok = invite.response(200, to_tag="x")
    transaction.send(ok, 0.0)
    assert transaction.state is State.ACCEPTED
    assert transaction.send(ok, 0.5) == [SendMessage(ok)]
    assert transaction.receive(invite, 0.6) == []
    ack = build_ack(invite, ok)
    assert transaction.receive(ack, 0.7) == [DeliverRequest(ack)]
    with pytest.raises(SipStateError):
        transaction.send(invite.response(486), 0.8)
    assert transaction.handle_timer(32.0) == [Terminated()]
    with pytest.raises(SipStateError):
        transaction.send(ok, 33.0)


def test_non_invite_server_absorbs_retransmissions() -> None:
    request = make_request("REGISTER")
    transaction = NonInviteServerTransaction(request, reliable=False)
    assert transaction.next_deadline() is None
    assert transaction.receive(request, 0.1) == []
    trying = request.response(100)
    assert transaction.send(trying, 0.2) == [SendMessage(trying)]
    assert transaction.receive(request, 0.3) == [SendMessage(trying)]
    ok = request.response(200)
    assert transaction.send(ok, 0.4) == [SendMessage(ok)]
    assert transaction.receive(request, 1.0) == [SendMessage(ok)]
    assert transaction.next_deadline() == pytest.approx(32.4)
    with pytest.raises(SipStateError):
        transaction.send(ok, 1.0)
    assert transaction.handle_timer(32.4) == [Terminated()]
    assert transaction.receive(request, 33.0) == []


def test_non_invite_server_reliable_terminates_on_final() -> None:
    request = make_request("OPTIONS")
    transaction = NonInviteServerTransaction(request, reliable=True)
    events = transaction.send(request.response(200), 0.0)
    assert events[-1] == Terminated()


def test_build_cancel() -> None:
    invite = make_request()
    invite.headers.prepend("Via", "SIP/2.0/UDP proxy.example;branch=z9hG4bKtop")
    cancel = build_cancel(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert cancel.headers.get_all("Via") == ["SIP/2.0/UDP proxy.example;branch=z9hG4bKtop"]
    assert cancel.cseq.number == 1 and cancel.cseq.method == "CANCEL"
    assert cancel.to_tag is None and cancel.headers.get("Route") == "<sip:proxy.example;lr>"
    parse_message(bytes(cancel)).validate()
