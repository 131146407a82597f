"""Matching messages to transactions (RFC 3261 §17.1.3, §17.2.3) and their timers.

The layer owns every live transaction, routes each incoming message to the one
it belongs to, and keeps a heap of deadlines so the owner needs a single timer.
"""

from __future__ import annotations

import heapq
import itertools

from .ids import MAGIC_COOKIE
from .message import Request, Response
from .transaction import (
    DEFAULT_TIMERS,
    ClientTransaction,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    TimerSettings,
)

ClientKey = tuple[str, str]
ServerKey = tuple[str, ...]
Transaction = ClientTransaction | ServerTransaction


def client_key(message: Request | Response) -> ClientKey:
    """Key of the client transaction a request starts or a response belongs to."""
    return (message.top_via.branch or "", message.cseq.method)


def server_key(request: Request, method: str | None = None) -> ServerKey:
    """Key of the server transaction a request belongs to; ACK maps to its INVITE."""
    via = request.top_via
    method = method or request.method
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return (branch, via.sent_by.lower(), method)
    # RFC 2543 peers: no usable branch, so match on the fields that identify the
    # request.  The To tag is left out because an ACK carries the one we chose.
    return (
        "rfc2543",
        str(request.uri),
        request.from_tag or "",
        request.call_id,
        str(request.cseq.number),
        str(via),
        method,
    )


class TransactionLayer:
    def __init__(self, timers: TimerSettings = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._clients: dict[ClientKey, ClientTransaction] = {}
        self._servers: dict[ServerKey, ServerTransaction] = {}
        self._client_keys: dict[int, ClientKey] = {}
        self._server_keys: dict[int, ServerKey] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def start_client(
        self, request: Request, *, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[Event]]:
        """Create and start the client transaction for an outgoing request (not ACK)."""
        transaction: ClientTransaction
        if request.method == "INVITE":
            transaction = InviteClientTransaction(request, reliable=reliable, timers=self.timers)
        else:
            transaction = NonInviteClientTransaction(request, reliable=reliable, timers=self.timers)
        key = client_key(request)
        self._clients[key] = transaction
        self._client_keys[id(transaction)] = key
        return transaction, self._after(transaction, transaction.start(now))

    def create_server(self, request: Request, *, reliable: bool, now: float) -> ServerTransaction:
        """Create the server transaction for a new incoming request (not ACK)."""
        transaction: ServerTransaction
        if request.method == "INVITE":
            transaction = InviteServerTransaction(
                request, reliable=reliable, now=now, timers=self.timers
            )
        else:
            transaction = NonInviteServerTransaction(request, reliable=reliable, timers=self.timers)
        key = server_key(request)
        self._servers[key] = transaction
        self._server_keys[id(transaction)] = key
        self._after(transaction, [])
        return transaction

    def match_request(self, request: Request) -> ServerTransaction | None:
        return self._servers.get(server_key(request))

    def match_response(self, response: Response) -> ClientTransaction | None:
        return self._clients.get(client_key(response))

    def cancel_target(self, cancel: Request) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (§9.2)."""
        transaction = self._servers.get(server_key(cancel, "INVITE"))
        return transaction if isinstance(transaction, InviteServerTransaction) else None

    def receive_request(
        self, request: Request, now: float
    ) -> tuple[ServerTransaction, list[Event]] | None:
        """Feed a request to its transaction; None when it starts a new one (or is a 2xx ACK)."""
        transaction = self.match_request(request)
        if transaction is None:
            return None
        return transaction, self._after(transaction, transaction.receive(request, now))

    def receive_response(
        self, response: Response, now: float
    ) -> tuple[ClientTransaction, list[Event]] | None:
        """Feed a response to its transaction; None for a stray one (a proxy forwards it)."""
        transaction = self.match_response(response)
        if transaction is None:
            return None
        return transaction, self._after(transaction, transaction.receive(response, now))

    def send_response(
        self, transaction: ServerTransaction, response: Response, now: float
    ) -> list[Event]:
        return self._after(transaction, transaction.send(response, now))

    def transport_error(self, transaction: Transaction) -> list[Event]:
        return self._after(transaction, transaction.transport_error())

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            due, _, transaction = heap[0]
            if transaction.next_deadline() == due and not transaction.terminated:
                return due
            heapq.heappop(heap)
        return None

    def handle_timers(self, now: float) -> list[tuple[Transaction, list[Event]]]:
        fired: list[tuple[Transaction, list[Event]]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, transaction = heapq.heappop(heap)
            if transaction.terminated or transaction.next_deadline() != due:
                continue
            events = self._after(transaction, transaction.handle_timer(now))
            if events:
                fired.append((transaction, events))
        return fired

    def _after(self, transaction: Transaction, events: list[Event]) -> list[Event]:
        """Forget a terminated transaction, or (re)arm its next deadline."""
        if transaction.terminated:
            client = self._client_keys.pop(id(transaction), None)
            if client is not None and self._clients.get(client) is transaction:
                del self._clients[client]
            server = self._server_keys.pop(id(transaction), None)
            if server is not None and self._servers.get(server) is transaction:
                del self._servers[server]
            return events
        deadline = transaction.next_deadline()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._sequence), transaction))
        return events
