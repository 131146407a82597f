"""Dialog state (RFC 3261 §12) and the in-dialog requests built from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from .ack_wait import acknowledges
from .errors import SipParseError
from .headers import Headers
from .ids import new_branch
from .message import Request, Response, Via
from .uri import NameAddr, SipUri, Uri

# Requests that may change the remote target (RFC 3261 §12.2, RFC 3311, RFC 6665).
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"


DialogId = tuple[str, str, str]


def _without_params(address: NameAddr) -> NameAddr:
    return NameAddr(address.uri, address.display_name)


def _contact_target(message: Request | Response) -> Uri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    is_uac: bool = True
    state: DialogState = DialogState.CONFIRMED
    # The last ACK built for a 2xx: each retransmission of that 2xx gets it again.
    last_ack: Request | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def secure(self) -> bool:
        return isinstance(self.remote_target, SipUri) and self.remote_target.scheme == "sips"

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a 1xx (with to-tag) or 2xx to our request creates (§12.1.2)."""
        remote_tag = response.to_tag
        local_tag = request.from_tag
        target = _contact_target(response)
        if remote_tag is None or local_tag is None or target is None:
            raise SipParseError("dialog-creating response needs tags and a Contact")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_params(request.from_),
            remote_uri=_without_params(request.to),
            remote_target=target,
            route_set=list(reversed(response.record_routes)),
            local_seq=request.cseq.number,
            is_uac=True,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
        )

    @classmethod
    def from_uas(cls, request: Request, response: Response) -> Dialog:
        """The dialog our 1xx/2xx to a request creates (§12.1.1)."""
        local_tag = response.to_tag
        remote_tag = request.from_tag
        target = _contact_target(request)
        if remote_tag is None or local_tag is None or target is None:
            raise SipParseError("dialog-creating request needs a From tag and a Contact")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_params(request.to),
            remote_uri=_without_params(request.from_),
            remote_target=target,
            route_set=request.record_routes,
            local_seq=0,
            remote_seq=request.cseq.number,
            is_uac=False,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
        )

    def update_from_response(self, response: Response) -> None:
        """Apply a later response to the dialog-creating or a target-refresh request."""
        if 200 <= response.status < 300 and self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED
            if self.is_uac:
                # §13.2.2.4: the route set is fixed by the 2xx, not the early 1xx.
                self.route_set = list(reversed(response.record_routes))
        if response.status < 300 and response.cseq.method in _TARGET_REFRESH:
            target = _contact_target(response)
            if target is not None:
                self.remote_target = target

    def receive_request(self, request: Request) -> bool:
        """Account for an in-dialog request; False if its CSeq is stale (answer 500)."""
        number = request.cseq.number
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and number <= self.remote_seq:
                return False
            self.remote_seq = number
        if request.method in _TARGET_REFRESH:
            target = _contact_target(request)
            if target is not None:
                self.remote_target = target
        return True

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        contact: NameAddr | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1) with a fresh branch on ``via``.

        ``cseq`` overrides the next sequence number; ACK for a 2xx passes the
        INVITE's and does not advance the dialog's own count.
        """
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._target_and_routes()
        message = Headers()
        message.add(
            "Via", str(dataclasses.replace(via, params={**via.params, "branch": new_branch()}))
        )
        for route in routes:
            message.add("Route", str(route))
        message.add("Max-Forwards", "70")
        message.add(
            "From",
            str(NameAddr(self.local_uri.uri, self.local_uri.display_name, {"tag": self.local_tag})),
        )
        message.add(
            "To",
            str(
                NameAddr(
                    self.remote_uri.uri, self.remote_uri.display_name, {"tag": self.remote_tag}
                )
            ),
        )
        message.add("Call-ID", self.call_id)
        message.add("CSeq", f"{cseq} {method}")
        if contact is not None:
            message.add("Contact", str(contact))
        for name, value in headers or []:
            message.add(name, value)
        if content_type is not None:
            message.add("Content-Type", content_type)
        return Request(method, uri, message, body)

    def create_ack(
        self, invite_cseq: int, *, via: Via, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx to an INVITE of this dialog (§13.2.2.4)."""
        self.last_ack = self.create_request(
            "ACK", via=via, body=body, content_type=content_type, cseq=invite_cseq
        )
        return self.last_ack

    def ack_again(self, response: Response) -> Request | None:
        """The ACK to send again for a retransmission of a 2xx already ACKed (§13.2.2.4)."""
        ack = self.last_ack
        return ack if ack is not None and acknowledges(ack, response) else None

    def _target_and_routes(self) -> tuple[Uri, list[NameAddr]]:
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and first.loose_route:
            return self.remote_target, list(self.route_set)
        # Strict router (RFC 2543): it goes in the Request-URI and the remote
        # target rides at the end of the Route set.
        return first, [*self.route_set[1:], NameAddr(self.remote_target)]
