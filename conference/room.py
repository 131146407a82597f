"""The room state machine and the layout rule, sans-I/O (no sockets, no clock).

A room knows its members, its main venue, who spoke last and whether it is
locked; it answers what each member must see. The asyncio runtime feeds it
joins, leaves, chair commands and speech, then applies the layouts it returns to
the SFU's slots. The layout rule keeps the cost linear in the number of venues:
each member receives the main venue and at most ``last_n`` active speakers.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

SourceRef = tuple[str, str]  # (room, venue) of a publisher


class Role(enum.StrEnum):
    CHAIR = "chair"
    VENUE = "venue"  # a meeting room that sends and receives
    VIEWER = "viewer"  # receive only


class Refusal(Exception):
    """A request the room turns down; ``code`` is the signalling error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Member:
    venue: str
    role: Role
    seq: int = 0  # join order: fills tiles when fewer venues spoke than there are tiles
    muted_by_chair: bool = False
    audio_on: bool = True
    video_on: bool = True
    sharing: bool = False
    guest_from: str | None = None  # the meeting a command-room chair pulled it from

    @property
    def publishes(self) -> bool:
        return self.role is not Role.VIEWER


@dataclass
class RoomState:
    name: str
    always_open: bool = False  # the command room: never locked
    locked: bool = False
    main_venue: str | None = None  # the chair's choice; see ``effective_main``
    pushed_from: str | None = None  # a command room whose main picture this room shows
    recording: bool = False
    members: dict[str, Member] = field(default_factory=dict)
    speakers: deque[str] = field(default_factory=deque)  # most recent first
    _seq: int = 0

    # -- membership ----------------------------------------------------------------

    def admit(self, member: Member) -> Member | None:
        """Add a member; a venue that rejoins replaces its stale self (returned)."""
        previous = self.members.get(member.venue)
        if self.locked and previous is None and member.role is not Role.CHAIR:
            raise Refusal("locked", f"room {self.name} is locked")
        self._seq += 1
        member.seq = self._seq
        if previous is not None:
            member.muted_by_chair = previous.muted_by_chair
            member.guest_from = member.guest_from or previous.guest_from
        self.members[member.venue] = member
        return previous

    def remove(self, venue: str) -> Member | None:
        member = self.members.pop(venue, None)
        if venue in self.speakers:
            self.speakers.remove(venue)
        return member

    def require_chair(self, venue: str) -> None:
        member = self.members.get(venue)
        if member is None or member.role is not Role.CHAIR:
            raise Refusal("forbidden", "only the chair may do this")

    def member(self, venue: str) -> Member:
        member = self.members.get(venue)
        if member is None:
            raise Refusal("not_found", f"no venue {venue!r} in room {self.name}")
        return member

    # -- chair commands ------------------------------------------------------------

    def set_locked(self, locked: bool) -> None:
        if locked and self.always_open:
            raise Refusal("forbidden", "the command room is always open")
        self.locked = locked

    def set_main(self, venue: str) -> None:
        if not self.member(venue).publishes:
            raise Refusal("invalid", f"{venue} is a viewer and sends no picture")
        self.main_venue = venue

    def set_muted(self, venue: str, muted: bool) -> Member:
        member = self.member(venue)
        member.muted_by_chair = muted
        return member

    # -- speech and layout ---------------------------------------------------------

    def note_speaker(self, venue: str) -> bool:
        """``venue`` is the dominant speaker now; True if the order changed."""
        member = self.members.get(venue)
        if member is None or not member.publishes or member.muted_by_chair:
            return False
        if self.speakers and self.speakers[0] == venue:
            return False
        if venue in self.speakers:
            self.speakers.remove(venue)
        self.speakers.appendleft(venue)
        return True

    def effective_main(self) -> str | None:
        """The chair's main venue if present, else the first chair, else the first publisher."""
        if self.main_venue is not None:
            chosen = self.members.get(self.main_venue)
            if chosen is not None and chosen.publishes:
                return chosen.venue
        publishers = sorted((m for m in self.members.values() if m.publishes), key=lambda m: m.seq)
        chairs = [m for m in publishers if m.role is Role.CHAIR]
        if chairs:
            return chairs[0].venue
        return publishers[0].venue if publishers else None

    def layout_for(
        self, venue: str, last_n: int, pushed_main: SourceRef | None = None
    ) -> list[SourceRef | None]:
        """Slot 0 is the main picture, slots 1..last_n the active speakers; never oneself."""
        main_ref: SourceRef | None = pushed_main
        if main_ref is None:
            main = self.effective_main()
            if main is not None and main != venue:
                main_ref = (self.name, main)
        ordered = [v for v in self.speakers if v in self.members]
        rest = sorted(
            (m for m in self.members.values() if m.publishes and m.venue not in ordered),
            key=lambda m: m.seq,
        )
        candidates = [*ordered, *(m.venue for m in rest)]
        taken = {venue} | ({main_ref[1]} if main_ref and main_ref[0] == self.name else set())
        tiles = [(self.name, v) for v in candidates if v not in taken]
        if main_ref is None and tiles:
            # The main venue itself sees the latest speaker large.
            main_ref = tiles.pop(0)
        slots: list[SourceRef | None] = [main_ref, *tiles[:last_n]]
        slots += [None] * (1 + last_n - len(slots))
        return slots


class SpeakerDetector:
    """Dominant speaker from RTP audio levels (RFC 6464: 0 loud .. 127 silent), no clock.

    Each venue's loudness is averaged over a short window; the loudest venue above
    the threshold becomes the speaker only after holding the lead for ``hold``
    consecutive ticks, so a cough does not flip the whole layout.
    """

    def __init__(self, threshold_dbov: int = 55, window: int = 25, hold: int = 2) -> None:
        self.threshold = 127 - threshold_dbov
        self.window = window
        self.hold = hold
        self._levels: dict[str, deque[int]] = {}
        self._leader: str | None = None
        self._lead_ticks = 0
        self.speaker: str | None = None

    def feed(self, venue: str, level_dbov: int) -> None:
        samples = self._levels.setdefault(venue, deque(maxlen=self.window))
        samples.append(127 - max(0, min(127, level_dbov)))

    def forget(self, venue: str) -> None:
        self._levels.pop(venue, None)
        if self.speaker == venue:
            self.speaker = None

    def tick(self) -> str | None:
        """Call a few times a second; returns the new dominant speaker when it changes."""
        best, best_score = None, float(self.threshold)
        for venue, samples in self._levels.items():
            if samples:
                score = sum(samples) / len(samples)
                if score > best_score:
                    best, best_score = venue, score
            samples.clear()
        if best is None:
            return None
        if best == self._leader:
            self._lead_ticks += 1
        else:
            self._leader, self._lead_ticks = best, 1
        if self._lead_ticks >= self.hold and best != self.speaker:
            self.speaker = best
            return best
        return None
