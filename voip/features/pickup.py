"""Call pickup: ``*8`` answers a call ringing in one's pickup group, ``*8<ext>`` at one phone.

An extension's pickup group is its ``pickup_group`` setting, or by default its
department: a phone may pick up a call ringing at any other extension of the same
group, never one of another group (403 for a directed pickup, 404 when nothing rings
in the group). The call core does the rest (:meth:`voip.b2bua.B2bua._pick_up`): the
ringing phones get CANCEL and the caller is answered by the picker.

Media stays phone to phone, so the two offers (the caller's INVITE, the picker's
INVITE) are each answered with the other's description, cut to the codecs the
offer named (:func:`bridge_answer`, sans-I/O). The ringing calls are known from the
call core's watcher hook, on this node only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from voip.models import Disposition
from voip.sip.errors import SdpParseError
from voip.sip.message import Request
from voip.sip.sdp import Media, SessionDescription, parse_sdp

from ..accounts import Account
from ..routing import Pickup, Refusal, Route
from .settings import FeatureStore

if TYPE_CHECKING:
    from ..b2bua import Call

log = structlog.get_logger("voip.features")

# The direction of an answer to an offer of each direction (RFC 3264 §6.1).
_ANSWER_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def _codec(media: Media, payload: str) -> tuple[str, int, int] | str:
    """What a format means: (encoding, clock rate, channels), or the static number."""
    rtpmap = media.rtpmaps().get(int(payload)) if payload.isdigit() else None
    if rtpmap is None:
        return payload  # a static payload type (0 PCMU, 8 PCMA) without rtpmap
    return (rtpmap.encoding.lower(), rtpmap.clock_rate, rtpmap.channels or 1)


def _static_name(payload: str) -> tuple[str, int, int] | None:
    return {"0": ("pcmu", 8000, 1), "8": ("pcma", 8000, 1), "9": ("g722", 8000, 1)}.get(payload)


def _same(a: tuple[str, int, int] | str, b: tuple[str, int, int] | str) -> bool:
    if isinstance(a, str):
        a = _static_name(a) or a
    if isinstance(b, str):
        b = _static_name(b) or b
    return a == b


def bridge_answer(offer: bytes, other: bytes) -> bytes | None:
    """``other``'s description as an answer to ``offer``; None when no codec is shared.

    The answer has the offer's streams in order (RFC 3264 §6): each takes the first
    unused stream of the same kind in ``other`` with only the formats the offer also
    named (keeping ``other``'s payload numbers: they say how ``other`` receives), its
    direction answering the offer's; a stream ``other`` lacks, or one the offer refused,
    is refused (port 0). The audio stream must keep at least one codec.
    """
    try:
        asked = parse_sdp(offer)
        source = parse_sdp(other)
    except SdpParseError:
        return None
    answer = SessionDescription(
        origin=source.origin,
        session_name=source.session_name,
        connection=source.connection,
        times=source.times,
        attributes=[a for a in source.attributes if a.name not in _DIRECTIONS],
    )
    unused = list(source.media)
    audio_kept = False
    for wanted in asked.media:
        match = next((m for m in unused if m.media == wanted.media and m.port != 0), None)
        formats: list[str] = []
        if match is not None and wanted.port != 0:
            unused.remove(match)
            offered = [_codec(wanted, f) for f in wanted.formats]
            formats = [f for f in match.formats if any(_same(_codec(match, f), o) for o in offered)]
        if match is None or not formats:
            answer.media.append(Media(wanted.media, 0, wanted.proto, wanted.formats[:1]))
            continue
        kept = set(formats)
        attributes = [
            a
            for a in match.attributes
            if a.name not in ("rtpmap", "fmtp", *_DIRECTIONS)
            or (a.name in ("rtpmap", "fmtp") and (a.value or "").split(" ", 1)[0] in kept)
        ]
        media = Media(
            match.media,
            match.port,
            match.proto,
            formats,
            connections=match.connections,
            bandwidths=match.bandwidths,
            attributes=attributes,
        )
        direction = asked.direction_of(wanted)
        media.set_direction(_ANSWER_DIRECTION.get(direction, source.direction_of(match)))
        answer.media.append(media)
        audio_kept = audio_kept or media.media == "audio"
    return bytes(answer) if audio_kept else None


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class CallPickup:
    """Which ringing call a picker may take, from the calls the core reports."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.ringing: dict[str, Call] = {}  # by the caller's Call-ID

    def watch(self, call: Call) -> None:
        if call.state == "ringing":
            self.ringing[call.id] = call
        else:
            self.ringing.pop(call.id, None)

    def group_of(self, account: Account) -> str | None:
        """The pickup group: the extension's own setting, else its department."""
        if account.id == 0:
            return None  # a ring group, a feature, the carrier: nobody's desk
        named = self.store.get(account.number).pickup_group
        if named:
            return f"group:{named}"
        if account.department_id is not None:
            return f"department:{account.department_id}"
        return None

    def route(self, picker: Account, target: str, request: Request) -> Route:
        group = self.group_of(picker)
        candidates = sorted(
            (
                call
                for call in self.ringing.values()
                if call.state == "ringing"
                and call.callee.number != picker.number
                and call.caller.number != picker.number
                and (not target or call.callee.number == target)
            ),
            key=lambda call: call.started,
        )
        if target and candidates and self.group_of(candidates[0].callee) != group:
            log.info("features.pickup_refused", picker=picker.number, target=target)
            return Refusal(403, Disposition.REJECTED, "Forbidden (not your pickup group)")
        ours = [c for c in candidates if group is not None and self.group_of(c.callee) == group]
        if not ours:
            return Refusal(404, Disposition.NOT_FOUND, "Not Found (no call to pick up)")
        call = ours[0]
        caller_offer = call.a_invite.body
        to_picker = bridge_answer(request.body, caller_offer) if caller_offer else None
        to_caller = bridge_answer(caller_offer, request.body) if request.body else None
        if to_picker is None or to_caller is None:
            return Refusal(488, Disposition.FAILED, "Not Acceptable Here (no common codec)")
        log.info("features.pickup", picker=picker.number, ringing=call.callee.number)
        return Pickup(call.id, to_picker, to_caller)
