"""The four transaction state machines of RFC 3261 §17 (with RFC 6026's Accepted state).

Each machine is fed messages and the current time and answers with a list of
events; it never sends, sleeps or reads a clock.  The owner arms one timer per
transaction at :meth:`next_deadline` and calls :meth:`handle_timer` when it is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import SipStateError
from .headers import Headers
from .message import Request, Response

# RFC 3261 §17.2.1: a 100 Trying goes out if the TU has not answered an INVITE
# within 200 ms, so that the client stops retransmitting.
TRYING_DELAY = 0.2


@dataclass(frozen=True)
class TimerSettings:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    @property
    def timeout(self) -> float:
        """64*T1, the lifetime of timers B, F, H, J, L and M."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerSettings()


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class SendMessage:
    """Hand this message to the transport, to the transaction's peer."""

    message: Request | Response


@dataclass(frozen=True)
class DeliverResponse:
    """A response for the transaction user (retransmissions are absorbed)."""

    response: Response


@dataclass(frozen=True)
class DeliverRequest:
    """An ACK for a 2xx that matched an Accepted INVITE server transaction."""

    request: Request


@dataclass(frozen=True)
class TransactionTimeout:
    """Timer B, F or H fired: no (final) response, or no ACK, in time."""


@dataclass(frozen=True)
class TransportError:
    """The transport could not send; the transaction is over."""


@dataclass(frozen=True)
class Terminated:
    """The transaction is finished and can be forgotten."""


Event = (
    SendMessage
    | DeliverResponse
    | DeliverRequest
    | TransactionTimeout
    | TransportError
    | Terminated
)


class Transaction:
    """Timers and termination shared by the four machines."""

    state: State

    def __init__(self, request: Request, *, reliable: bool, timers: TimerSettings) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self._deadlines: dict[str, float] = {}
        self._interval = timers.t1

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``, earliest first."""
        events: list[Event] = []
        while self._deadlines:
            name, due = min(self._deadlines.items(), key=lambda item: item[1])
            if due > now:
                break
            del self._deadlines[name]
            # Rescheduling from the due time rather than ``now`` keeps the
            # retransmission schedule exact even when the owner wakes late.
            events.extend(self._fire(name, due))
        return events

    def transport_error(self) -> list[Event]:
        if self.terminated:
            return []
        return [TransportError(), *self._terminate()]

    def _fire(self, name: str, due: float) -> list[Event]:
        raise NotImplementedError

    def _terminate(self) -> list[Event]:
        self.state = State.TERMINATED
        self._deadlines.clear()
        return [Terminated()]

    def _set(self, name: str, at: float) -> None:
        self._deadlines[name] = at

    def _cancel(self, *names: str) -> None:
        for name in names:
            self._deadlines.pop(name, None)

    def _wait_or_terminate(self, name: str, now: float, unreliable_wait: float) -> list[Event]:
        """Timers D, I, J, K: linger for retransmissions only over unreliable transports."""
        if self.reliable:
            return self._terminate()
        self._set(name, now + unreliable_wait)
        return []


class InviteClientTransaction(Transaction):
    """§17.1.1: sends an INVITE; ACKs non-2xx finals itself."""

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerSettings = DEFAULT_TIMERS
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.state = State.CALLING
        self._ack: Request | None = None

    def start(self, now: float) -> list[Event]:
        if not self.reliable:
            self._set("A", now + self.timers.t1)
        self._set("B", now + self.timers.timeout)
        return [SendMessage(self.request)]

    def receive(self, response: Response, now: float) -> list[Event]:
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            self._cancel("A", "B")
            if status < 200:
                self.state = State.PROCEEDING
                return [DeliverResponse(response)]
            if status < 300:
                self.state = State.ACCEPTED
                self._set("M", now + self.timers.timeout)
                return [DeliverResponse(response)]
            self.state = State.COMPLETED
            self._ack = build_ack(self.request, response)
            events: list[Event] = [SendMessage(self._ack), DeliverResponse(response)]
            return events + self._wait_or_terminate("D", now, self.timers.timer_d)
        if self.state is State.COMPLETED and status >= 300 and self._ack is not None:
            return [SendMessage(self._ack)]
        if self.state is State.ACCEPTED and 200 <= status < 300:
            # Each 2xx retransmission needs the TU to send its ACK again.
            return [DeliverResponse(response)]
        return []

    def _fire(self, name: str, due: float) -> list[Event]:
        if name == "A":
            self._interval *= 2
            self._set("A", due + self._interval)
            return [SendMessage(self.request)]
        if name == "B":
            return [TransactionTimeout(), *self._terminate()]
        return self._terminate()


class NonInviteClientTransaction(Transaction):
    """§17.1.2: sends any request but INVITE and ACK."""

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerSettings = DEFAULT_TIMERS
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.state = State.TRYING

    def start(self, now: float) -> list[Event]:
        if not self.reliable:
            self._set("E", now + self.timers.t1)
        self._set("F", now + self.timers.timeout)
        return [SendMessage(self.request)]

    def receive(self, response: Response, now: float) -> list[Event]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        if response.status < 200:
            self.state = State.PROCEEDING
            return [DeliverResponse(response)]
        self.state = State.COMPLETED
        self._cancel("E", "F")
        events: list[Event] = [DeliverResponse(response)]
        return events + self._wait_or_terminate("K", now, self.timers.t4)

    def _fire(self, name: str, due: float) -> list[Event]:
        if name == "E":
            if self.state is State.PROCEEDING:
                self._interval = self.timers.t2
            else:
                self._interval = min(2 * self._interval, self.timers.t2)
            self._set("E", due + self._interval)
            return [SendMessage(self.request)]
        if name == "F":
            return [TransactionTimeout(), *self._terminate()]
        return self._terminate()


class InviteServerTransaction(Transaction):
    """§17.2.1: answers an INVITE; retransmits non-2xx finals until ACKed."""

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool,
        now: float,
        timers: TimerSettings = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.state = State.PROCEEDING
        self.last_response: Response | None = None
        self._set("trying", now + TRYING_DELAY)

    def send(self, response: Response, now: float) -> list[Event]:
        """Send a response from the TU."""
        status = response.status
        if self.state is State.ACCEPTED and 200 <= status < 300:
            return [SendMessage(response)]
        if self.state is not State.PROCEEDING:
            raise SipStateError(f"cannot send {status} in state {self.state.value}")
        self._cancel("trying")
        self.last_response = response
        if status < 200:
            return [SendMessage(response)]
        if status < 300:
            self.state = State.ACCEPTED
            self._set("L", now + self.timers.timeout)
            return [SendMessage(response)]
        self.state = State.COMPLETED
        if not self.reliable:
            self._set("G", now + self.timers.t1)
        self._set("H", now + self.timers.timeout)
        return [SendMessage(response)]

    def receive(self, request: Request, now: float) -> list[Event]:
        """A retransmitted INVITE, or the ACK, matched to this transaction."""
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._cancel("G", "H")
                return self._wait_or_terminate("I", now, self.timers.t4)
            if self.state is State.ACCEPTED:
                return [DeliverRequest(request)]
            return []
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [SendMessage(self.last_response)]
        return []

    def _fire(self, name: str, due: float) -> list[Event]:
        if name == "trying":
            self.last_response = self.request.response(100)
            return [SendMessage(self.last_response)]
        if name == "G":
            assert self.last_response is not None
            self._interval = min(2 * self._interval, self.timers.t2)
            self._set("G", due + self._interval)
            return [SendMessage(self.last_response)]
        if name == "H":
            return [TransactionTimeout(), *self._terminate()]
        return self._terminate()


class NonInviteServerTransaction(Transaction):
    """§17.2.2: answers any request but INVITE and ACK; absorbs retransmissions."""

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerSettings = DEFAULT_TIMERS
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.state = State.TRYING
        self.last_response: Response | None = None

    def send(self, response: Response, now: float) -> list[Event]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise SipStateError(f"cannot send {response.status} in state {self.state.value}")
        self.last_response = response
        if response.status < 200:
            self.state = State.PROCEEDING
            return [SendMessage(response)]
        self.state = State.COMPLETED
        events: list[Event] = [SendMessage(response)]
        return events + self._wait_or_terminate("J", now, self.timers.timeout)

    def receive(self, request: Request, now: float) -> list[Event]:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [SendMessage(self.last_response)]
        return []

    def _fire(self, name: str, due: float) -> list[Event]:
        return self._terminate()


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a non-2xx final response (§17.1.1.3)."""
    headers = Headers()
    headers.add("Via", invite.headers.get_list("Via")[0])
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    return Request("ACK", invite.uri, headers)


def build_cancel(invite: Request) -> Request:
    """A CANCEL for a pending INVITE (§9.1): same Via branch, so it reaches the same server."""
    headers = Headers()
    headers.add("Via", invite.headers.get_list("Via")[0])
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    return Request("CANCEL", invite.uri, headers)
