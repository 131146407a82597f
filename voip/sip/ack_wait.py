"""A UAS core's 2xx to an INVITE, sent again until its ACK comes (RFC 3261 §13.3.1.4).

The INVITE server transaction hands a 2xx over and keeps only the retransmitted INVITEs
(RFC 6026's Accepted state), so the core that answered retransmits it itself, over an
unreliable transport: after T1, the interval doubling up to T2, until the ACK with that
INVITE's CSeq arrives. The same holds for the 2xx of a re-INVITE (§14.2). After 64*T1 with
no ACK the dialog stands but the session should be ended with a BYE: :class:`AckTimeout`.

Sans-I/O like the transactions: fed the current time, it answers with events; the owner
arms one timer at :meth:`AckWait.next_deadline` and calls :meth:`AckWait.handle_timer`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SipParseError
from .message import Request, Response
from .transaction import DEFAULT_TIMERS, SendMessage, TimerSettings


@dataclass(frozen=True)
class AckTimeout:
    """64*T1 went by without the ACK: end the session with a BYE (§13.3.1.4)."""


AckWaitEvent = SendMessage | AckTimeout


class AckWait:
    def __init__(
        self, answer: Response, *, now: float, timers: TimerSettings = DEFAULT_TIMERS
    ) -> None:
        if not 200 <= answer.status < 300 or answer.cseq.method != "INVITE":
            raise ValueError("only a 2xx to an INVITE waits for an ACK")
        self.answer = answer
        self.timers = timers
        self.acked = False
        self.gave_up = False
        self.retransmissions = 0
        self._interval = timers.t1
        self._next = now + timers.t1
        self._give_up = now + timers.timeout

    @property
    def done(self) -> bool:
        return self.acked or self.gave_up

    def next_deadline(self) -> float | None:
        return None if self.done else min(self._next, self._give_up)

    def handle_timer(self, now: float) -> list[AckWaitEvent]:
        """Everything due at ``now``: retransmissions, then perhaps the end of the wait."""
        events: list[AckWaitEvent] = []
        while not self.done:
            if self._give_up <= min(self._next, now):
                self.gave_up = True
                events.append(AckTimeout())
            elif self._next <= now:
                events.append(SendMessage(self.answer))
                self.retransmissions += 1
                self._interval = min(2 * self._interval, self.timers.t2)
                # From the due time, not ``now``: a late wake-up keeps the schedule.
                self._next += self._interval
            else:
                break
        return events

    def acknowledge(self, ack: Request) -> bool:
        """True (and the wait is over) if ``ack`` is the ACK of this 2xx."""
        if self.done or not acknowledges(ack, self.answer):
            return False
        self.acked = True
        return True


def acknowledges(ack: Request, answer: Response) -> bool:
    """Whether ``ack`` is the ACK of the 2xx ``answer`` to an INVITE: same dialog and CSeq."""
    try:
        return (
            ack.method == "ACK"
            and 200 <= answer.status < 300
            and answer.cseq.method == "INVITE"
            and ack.call_id == answer.call_id
            and ack.cseq.number == answer.cseq.number
            and ack.from_tag == answer.from_tag
            and ack.to_tag == answer.to_tag
        )
    except SipParseError:
        return False
