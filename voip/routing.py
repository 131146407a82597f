"""What the call core asks before it routes an INVITE, and the answers it understands.

The B2BUA knows how to reach extensions; everything else (feature codes served by
the media workers, the carrier trunk, class-of-service refusals) is decided by a
:class:`CallRouter` that it consults first. ``None`` means "an extension: route it
yourself", a :class:`Refusal` is answered at once, a :class:`Forward` names the
legs to fork to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from voip.models import Disposition
from voip.sip.message import Request, Response

from .accounts import Account
from .transport.base import Flow


@dataclass(frozen=True)
class Refusal:
    status: int
    disposition: Disposition
    reason: str | None = None
    # kept in the CDR: "inbound" for the carrier's calls, "outbound" for an outside
    # number the dial plan refused (class of service)
    direction: str = "internal"


@dataclass
class Forward:
    """Fork the call to ``targets`` (URI, flow) as if ``callee`` had registered them."""

    callee: Account
    targets: list[tuple[str, Flow]]
    direction: str = "internal"  # internal, outbound, inbound: kept in the CDR
    # The user part of our From towards the targets (the department's caller ID on a trunk).
    from_user: str | None = None
    # SDP rewriting of an anchored call (trunk): every body towards the targets goes
    # through ``rewrite_outward``, every body back to the caller through ``rewrite_inward``.
    rewrite_outward: Callable[[bytes], bytes] | None = None
    rewrite_inward: Callable[[bytes], bytes] | None = None
    # Called once when the call ends, whatever the reason (frees relay ports, sessions),
    # or when a transfer moves the caller to another callee (the worker's slot is free).
    on_end: list[Callable[[], None]] = field(default_factory=list)
    # Called once when the whole call ends, even after a transfer: what lives as long as
    # the caller's leg (the RTP relay of an anchored call). Carried by next steps.
    on_call_end: list[Callable[[], None]] = field(default_factory=list)
    # A target's 401/407 (a carrier that authenticates every INVITE): the INVITE to send
    # again with credentials, or None to let the fork fail (RFC 3261 §22.2).
    authorize: Callable[[Request, Response], Request | None] | None = None
    # How long the targets ring before ``next_step`` (or 480) takes over; None: the default.
    ring_seconds: float | None = None
    # What to do when every target failed (called with 486 busy, 408 no answer, or the
    # best final status): forward elsewhere, voicemail, the next ring group member.
    # ``None`` or a Refusal from it ends the call as before.
    next_step: Callable[[int], Awaitable[Route]] | None = None


@dataclass(frozen=True)
class Pickup:
    """Answer the call ``call_id`` (ringing elsewhere) with the picker's INVITE.

    ``to_picker`` is the caller's session description as the picker's answer,
    ``to_caller`` the picker's as the caller's answer (see ``voip.features.pickup``).
    """

    call_id: str
    to_picker: bytes
    to_caller: bytes


@dataclass(frozen=True)
class Detour:
    """What a feature makes of an in-dialog INVITE before the core relays it (hold music)."""

    status: int | None = None  # answer it with this status instead of relaying it
    body: bytes | None = None  # relay this body instead of the request's
    after: Callable[[int], None] | None = None  # told the relayed request's final status


Route = Refusal | Forward | Pickup | None


class CallRouter(Protocol):
    async def route(self, caller: Account, number: str, request: Request) -> Route: ...


def pseudo_account(number: str, name: str, department_id: int | None = None) -> Account:
    """The callee of a call that reaches no extension (a feature, the carrier)."""
    return Account(0, number, name, department_id, "", "", True)
