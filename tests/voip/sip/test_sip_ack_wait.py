"""A UAS core's 2xx to an INVITE or re-INVITE, again until its ACK (RFC 3261 §13.3.1.4)."""

import pytest

from voip.sip.ack_wait import AckTimeout, AckWait, AckWaitEvent, acknowledges
from voip.sip.dialog import Dialog
from voip.sip.headers import Headers
from voip.sip.message import Request, Response, Via
from voip.sip.transaction import SendMessage, TimerSettings
from voip.sip.uri import parse_uri

VIA = Via("UDP", "10.0.0.9", 5060, {"rport": None})


def reinvite(cseq: int = 2, method: str = "INVITE") -> Request:
    """A re-INVITE from the phone at 10.0.0.1 in an established dialog."""
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKre{cseq}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:1001@unicomm>;tag=phone"),
            ("To", "<sip:1002@unicomm>;tag=pbx"),
            ("Call-ID", "call-7"),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:1001@10.0.0.1:5060>"),
        ]
    )
    return Request(method, parse_uri("sip:1002@10.0.0.9"), headers)


def ack_of(invite: Request, *, cseq: int | None = None, to_tag: str = "pbx") -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack"),
            ("From", invite.headers.get("From") or ""),
            ("To", f"<sip:1002@unicomm>;tag={to_tag}"),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{cseq if cseq is not None else invite.cseq.number} ACK"),
        ]
    )
    return Request("ACK", invite.uri, headers)


def sent_at(wait: AckWait, until: float) -> tuple[list[float], list[AckWaitEvent]]:
    """Drive the wait with a fake clock: when the 2xx went again, and every event."""
    times: list[float] = []
    events: list[AckWaitEvent] = []
    while (due := wait.next_deadline()) is not None and due <= until:
        fired = wait.handle_timer(due)
        events += fired
        if any(isinstance(e, SendMessage) for e in fired):
            times.append(round(due, 6))
    return times, events


def test_2xx_goes_again_t1_doubling_to_t2_then_gives_up_at_64_t1() -> None:
    ok = reinvite().response(200)
    wait = AckWait(ok, now=10.0)
    times, events = sent_at(wait, 100.0)
    # T1 = 0.5 doubling to T2 = 4: 0.5, 1.5, 3.5, 7.5, then every 4 s up to 64*T1 = 32.
    assert times == [10 + t for t in (0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)]
    assert all(e.message is ok for e in events if isinstance(e, SendMessage))
    assert events[-1] == AckTimeout() and wait.gave_up and wait.retransmissions == 10
    assert wait.next_deadline() is None and wait.handle_timer(200.0) == []


def test_the_ack_stops_it() -> None:
    invite = reinvite()
    wait = AckWait(invite.response(200), now=0.0)
    assert [type(e) for e in wait.handle_timer(0.5)] == [SendMessage]
    assert not wait.acknowledge(ack_of(invite, cseq=1))  # an older INVITE's ACK
    assert not wait.acknowledge(ack_of(invite, to_tag="someone-else"))
    assert not wait.acknowledge(invite)  # not an ACK at all
    assert wait.next_deadline() == 1.5
    assert wait.acknowledge(ack_of(invite))
    assert wait.acked and wait.next_deadline() is None and wait.handle_timer(40.0) == []
    assert not wait.acknowledge(ack_of(invite))  # a retransmitted ACK: nothing more to stop


def test_a_late_wake_up_catches_up_on_schedule() -> None:
    wait = AckWait(reinvite().response(200), now=0.0, timers=TimerSettings(t1=0.1, t2=0.4))
    events = wait.handle_timer(1.0)  # due at 0.1, 0.3, 0.7: all three, nothing invented
    assert len(events) == 3 and wait.next_deadline() == pytest.approx(1.1)
    # Woken only after 64*T1: what was due before it goes, then the timeout.
    events = wait.handle_timer(50.0)
    assert isinstance(events[-1], AckTimeout) and wait.retransmissions == 17


def test_only_a_2xx_to_an_invite_waits() -> None:
    with pytest.raises(ValueError):
        AckWait(reinvite().response(180), now=0.0)
    with pytest.raises(ValueError):
        AckWait(reinvite(method="UPDATE").response(200), now=0.0)
    assert acknowledges(ack_of(reinvite()), reinvite().response(200))
    assert not acknowledges(ack_of(reinvite()), reinvite().response(486))


def test_dialog_sends_the_same_ack_for_every_retransmitted_2xx() -> None:
    """§13.2.2.4: the UAC core ACKs each 2xx retransmission of its (re-)INVITE."""
    first = reinvite(1)  # the To tag is the exchange's already: the 200 keeps it
    dialog = Dialog.from_uas(first, first.response(200))
    ours = dialog.create_request("INVITE", via=VIA)  # the exchange's re-INVITE to the phone
    ok: Response = ours.response(200)
    assert dialog.ack_again(ok) is None  # not ACKed yet (an offer whose answer is awaited)
    ack = dialog.create_ack(ours.cseq.number, via=VIA)
    assert dialog.ack_again(ok) is ack and dialog.ack_again(ok) is ack
    assert dialog.ack_again(ours.response(180)) is None
    assert dialog.ack_again(ours.response(486)) is None
    later = dialog.create_request("INVITE", via=VIA)
    assert dialog.ack_again(later.response(200)) is None  # another INVITE's 2xx
