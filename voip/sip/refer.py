"""REFER (RFC 3515) and Replaces (RFC 3891), sans-I/O: what a transfer asks, how it went.

A phone transfers its call by sending REFER in the dialog with ``Refer-To`` naming
the target (blind), or naming the target with a ``Replaces`` header parameter
(attended: "take the place of my consultation call"). The exchange accepts (202),
and reports progress to the transferor by NOTIFY with a ``message/sipfrag`` body,
one status line each ("SIP/2.0 100 Trying", then the final status), the last one
ending the implicit subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .errors import SipParseError
from .uri import NameAddr, SipUri, parse_name_addr

SIPFRAG = "message/sipfrag;version=2.0"
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog an attended transfer's target call replaces (RFC 3891 §6.1)."""

    call_id: str
    to_tag: str
    from_tag: str


@dataclass(frozen=True, slots=True)
class ReferTarget:
    uri: SipUri
    replaces: Replaces | None = None

    @property
    def number(self) -> str:
        return self.uri.user or ""


def parse_refer_to(value: str) -> ReferTarget:
    """The target of a REFER; SipParseError for anything but a SIP URI with a user."""
    address: NameAddr = parse_name_addr(value.strip())
    uri = address.uri
    if not isinstance(uri, SipUri) or not uri.user:
        raise SipParseError("Refer-To must be a SIP URI with a user part")
    replaces = None
    embedded = next((v for k, v in uri.headers.items() if unquote(k).lower() == "replaces"), None)
    if embedded is not None:
        replaces = parse_replaces(unquote(embedded))
    return ReferTarget(uri, replaces)


def parse_replaces(value: str) -> Replaces:
    """``call-id;to-tag=...;from-tag=...`` (the header or the Refer-To URI's header)."""
    call_id, _, rest = value.strip().partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        name, _, param = part.strip().partition("=")
        if name:
            params[name.lower()] = param
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not call_id or not to_tag or not from_tag:
        raise SipParseError("Replaces needs a Call-ID, to-tag and from-tag")
    return Replaces(call_id.strip(), to_tag, from_tag)


def sipfrag(status: int) -> bytes:
    """The NOTIFY body that tells the transferor how the call to the target went."""
    return f"SIP/2.0 {status} {REASONS.get(status, 'Unknown')}\r\n".encode()


def notify_headers(status: int, *, expires: int = 60) -> list[tuple[str, str]]:
    """Event and Subscription-State for a progress NOTIFY; a final status ends it."""
    if status < 200:
        state = f"active;expires={expires}"
    else:
        state = "terminated;reason=noresource"
    return [("Event", "refer"), ("Subscription-State", state)]
