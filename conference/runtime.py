"""The conference on this node: signalling messages in, room state and SFU slots out.

This is the asyncio adapter around :mod:`conference.room` (what each venue sees)
and :mod:`conference.sfu` (moving the encoded frames). It also writes who is
where to the database (attendance) and to shared state (presence), so any node
can answer, and shows bus alerts as a banner in every room.

Media of a room lives on the node its participants signalled to; several nodes
share rooms' records and presence, not packets (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import structlog
from aiortc import RTCSessionDescription

from conference import ice, service
from conference.models import RoomKind
from conference.recorder import MeetingRecorder, RecordingError
from conference.room import Member, Refusal, Role, RoomState, SourceRef, SpeakerDetector
from conference.sfu import Peer, open_peer
from core.bus import Event
from core.context import AppContext
from core.models import Role as StaffRole
from signaling.hub import Connection
from signaling.protocol import (
    Alert,
    Answer,
    ClientMessage,
    Error,
    Join,
    Joined,
    Layout,
    Leave,
    LockRoom,
    Moved,
    Mute,
    Muted,
    MuteVenue,
    Offer,
    Ping,
    Pong,
    PullVenue,
    PushPicture,
    Recording,
    Removed,
    RemoveVenue,
    ReturnVenue,
    RoomEvent,
    SetMain,
    Share,
    SlotMids,
    SlotSource,
    VenueInfo,
)

log = structlog.get_logger("conference")

CHAIR_ROLES = (StaffRole.ADMIN, StaffRole.OPERATOR, StaffRole.DUTY_OFFICER)
SPEAKER_TICK_SECONDS = 0.3
PRESENCE_TTL_SECONDS = 60.0


class PresenceChanged(Event):
    """A venue joined or left a room on some node (for consoles and other nodes)."""

    topic: ClassVar[str] = "conference.presence_changed"

    room: str
    venue: str
    node: str
    action: str  # "join" | "leave" | "move"


# Hands a finished recording to vod (``vod.import_recording``); returns its job id.
Handover = Callable[..., Awaitable[int]]


def presence_key(room: str) -> str:
    return f"conference:presence:{room}"


@dataclass(eq=False)
class Participant:
    key: str
    connection: Connection
    room: str
    venue: str
    role: Role
    peer: Peer | None = None
    attendance_id: int | None = None
    layout: list[SourceRef | None] = field(default_factory=list)
    gone: bool = False

    @property
    def ref(self) -> SourceRef:
        return (self.room, self.venue)


class ConferenceRuntime:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.node = ctx.settings.node_name or socket.gethostname()
        self.command_room = ctx.settings.conference_command_room
        self.rooms: dict[str, RoomState] = {}
        self.detectors: dict[str, SpeakerDetector] = {}
        self.by_connection: dict[Connection, Participant] = {}
        self.by_ref: dict[SourceRef, Participant] = {}
        self.last_alert: Alert | None = None
        self._lock = asyncio.Lock()
        # Set by setup() when vod is installed; without it the chair cannot record.
        self.handover: Handover | None = None
        self.recorders: dict[str, MeetingRecorder] = {}
        self.recordings_dir = Path(ctx.settings.data_dir) / "conference" / "recordings"
        self._finishing: set[asyncio.Task[int | None]] = set()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        ice.offer_loopback(self.settings.conference_ice_loopback)
        async with self.ctx.db.session() as session:
            await service.ensure_command_room(session, self.command_room)
            await service.close_open_attendance(session, self.node)
        await self._subscribe_alerts()
        self.ctx.spawn("conference.speakers", self._speaker_loop)
        self.ctx.spawn("conference.presence", self._presence_loop)

    async def stop(self) -> None:
        for participant in list(self.by_connection.values()):
            await self._drop(participant, "shutdown", refresh=False)
        for room in list(self.recorders):
            self._stop_recording(room)
        # A recording stopped by the shutdown is still handed over (vod's job is durable).
        await asyncio.gather(*self._finishing, return_exceptions=True)

    async def _subscribe_alerts(self) -> None:
        alert_type = _alert_event_type()
        if alert_type is None:
            return

        async def show(event: Event) -> None:
            alert = Alert(
                headline=str(getattr(event, "headline", "")),
                description=str(getattr(event, "description", "")),
                severity=str(getattr(event, "severity", "Unknown")),
            )
            self.last_alert = alert
            for participant in list(self.by_connection.values()):
                await participant.connection.send(alert)

        await self.ctx.bus.subscribe(alert_type, show)

    # -- the signalling channel ----------------------------------------------------

    async def received(self, connection: Connection, message: ClientMessage) -> None:
        try:
            async with self._lock:
                await self._dispatch(connection, message)
        except Refusal as refusal:
            await connection.send(
                Error(code=refusal.code, message=str(refusal), ref=message.type)  # type: ignore[arg-type]
            )

    async def closed(self, connection: Connection, reason: str) -> None:
        participant = self.by_connection.get(connection)
        if participant is not None:
            async with self._lock:
                await self._drop(participant, reason)

    async def _dispatch(self, connection: Connection, message: ClientMessage) -> None:
        if isinstance(message, Ping):
            await connection.send(Pong())
            return
        if isinstance(message, Join):
            await self._join(connection, message)
            return
        participant = self.by_connection.get(connection)
        if participant is None:
            raise Refusal("unauthenticated", "join a room first")
        state = self.rooms[participant.room]
        if isinstance(message, Answer):
            await self._answer(participant, message)
        elif isinstance(message, Leave):
            await self._drop(participant, "left")
            await connection.close("left")
        elif isinstance(message, Mute):
            member = state.member(participant.venue)
            member.audio_on, member.video_on = message.audio, message.video
            await self._announce(participant.room)
        elif isinstance(message, Share):
            state.member(participant.venue).sharing = message.on
            await self._announce(participant.room)
        else:
            state.require_chair(participant.venue)
            await self._chair(participant, state, message)

    # -- join, answer, leave -------------------------------------------------------

    async def _join(self, connection: Connection, message: Join) -> None:
        if connection in self.by_connection:
            raise Refusal("state", "this connection already joined a room")
        async with self.ctx.db.session() as session:
            try:
                room = await service.get_room(session, message.room)
            except service.RoomError as exc:
                raise Refusal("not_found", str(exc)) from None
            staff = connection.identity
            is_staff = staff is not None and staff.role is not None
            if message.role == "chair":
                if staff is None or not staff.has_role(*CHAIR_ROLES):
                    raise Refusal("forbidden", "the chair signs in to the console first")
            elif not is_staff and not service.pin_matches(room.pin_hash, message.pin):
                raise Refusal("unauthenticated", "a console session or the room's PIN is needed")
            state = self._room_state(room.name, room.kind, room.locked, room.main_venue)
            previous_member = state.admit(Member(message.venue, Role(message.role)))
            attendance_id = await service.record_join(
                session, room.name, message.venue, message.role, self.node
            )
        if previous_member is not None:
            stale = self.by_ref.get((room.name, message.venue))
            if stale is not None:
                # A room PC that rejoins after a network drop replaces its old self.
                await self._drop(stale, "replaced", refresh=False, keep_member=True)
                await stale.connection.send(Removed(reason="replaced"))
                await stale.connection.close("replaced")
        participant = Participant(
            uuid.uuid4().hex,
            connection,
            room.name,
            message.venue,
            Role(message.role),
            attendance_id=attendance_id,
        )
        self.by_connection[connection] = participant
        self.by_ref[participant.ref] = participant
        slots = 1 + self.settings.conference_last_n
        await connection.send(
            Joined(room=room.name, venue=message.venue, role=message.role, slots=slots)
        )
        member = state.members[message.venue]
        peer, sdp = await open_peer(
            participant.key,
            publishes=member.publishes,
            slots=slots,
            video_codec=self.settings.conference_video_codec,
            queue_frames=self.settings.conference_queue_frames,
            keyframe_interval=self.settings.conference_keyframe_interval,
            on_audio_level=lambda level: self._heard(participant, level),
        )
        participant.peer = peer
        if member.muted_by_chair and peer.audio is not None:
            peer.audio.muted = True

        @peer.pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info(
                "conference.media_state",
                room=participant.room,
                venue=participant.venue,
                state=peer.pc.connectionState,
            )
            if peer.pc.connectionState == "failed" and not participant.gone:
                async with self._lock:
                    await self._drop(participant, "media_failed")

        publish = (
            SlotMids(index=-1, audio=peer.publish_mids[0], video=peer.publish_mids[1])
            if peer.publish_mids
            else None
        )
        await connection.send(
            Offer(
                sdp=sdp,
                publish=publish,
                slots=[
                    SlotMids(index=i, audio=a, video=v) for i, (a, v) in enumerate(peer.slot_mids)
                ],
            )
        )
        await self._presence(participant, "join")
        if self.last_alert is not None:
            await connection.send(self.last_alert)
        await self._refresh(room.name)

    async def _answer(self, participant: Participant, message: Answer) -> None:
        peer = participant.peer
        if peer is None or peer.pc.signalingState != "have-local-offer":
            raise Refusal("state", "no offer is waiting for an answer")
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(message.sdp, "answer"))
        except Exception as exc:  # aiortc raises ValueError and friends on a bad SDP
            raise Refusal("invalid", f"answer refused: {exc}") from None

    async def _drop(
        self,
        participant: Participant,
        reason: str,
        *,
        refresh: bool = True,
        keep_member: bool = False,
    ) -> None:
        if participant.gone:
            return
        participant.gone = True
        self.by_connection.pop(participant.connection, None)
        if self.by_ref.get(participant.ref) is participant:
            del self.by_ref[participant.ref]
        state = self.rooms.get(participant.room)
        if state is not None and not keep_member:
            state.remove(participant.venue)
            self.detectors[participant.room].forget(participant.venue)
        if participant.peer is not None:
            await participant.peer.close()
        async with self.ctx.db.session() as session:
            if participant.attendance_id is not None:
                await service.record_leave(session, participant.attendance_id, reason)
            if (
                state is not None
                and not state.members
                and not keep_member
                and await self._is_adhoc(session, participant.room)
            ):
                await service.remove_room(session, participant.room)
                del self.rooms[participant.room]
                state = None
        if state is None or not state.members:
            # Nobody left to record: what was recorded so far goes to vod.
            self._stop_recording(participant.room)
        if not keep_member:
            await self._presence(participant, "leave")
        log.info("conference.left", room=participant.room, venue=participant.venue, reason=reason)
        if refresh and state is not None:
            await self._refresh(participant.room)

    async def _is_adhoc(self, session: object, room: str) -> bool:
        try:
            record = await service.get_room(session, room)  # type: ignore[arg-type]
        except service.RoomError:
            return False
        return record.kind is RoomKind.ADHOC

    # -- chair commands ------------------------------------------------------------

    async def _chair(self, chair: Participant, state: RoomState, message: ClientMessage) -> None:
        if isinstance(message, MuteVenue):
            state.set_muted(message.venue, message.muted)
            target = self.by_ref.get((state.name, message.venue))
            if target is not None and target.peer is not None and target.peer.audio is not None:
                target.peer.audio.muted = message.muted
                await target.connection.send(Muted(muted=message.muted, by=chair.venue))
        elif isinstance(message, RemoveVenue):
            target = self.by_ref.get((state.name, message.venue))
            state.member(message.venue)
            if target is None:
                state.remove(message.venue)
            else:
                await target.connection.send(Removed(reason="removed_by_chair"))
                await self._drop(target, "removed", refresh=False)
                await target.connection.close("removed")
        elif isinstance(message, LockRoom):
            state.set_locked(message.locked)
            async with self.ctx.db.session() as session:
                await service.set_locked(session, state.name, message.locked)
        elif isinstance(message, SetMain):
            state.set_main(message.venue)
            async with self.ctx.db.session() as session:
                await service.set_main_venue(session, state.name, message.venue)
        elif isinstance(message, PullVenue | ReturnVenue | PushPicture):
            if state.name != self.command_room:
                raise Refusal("forbidden", "only the command room's chair may do this")
            if isinstance(message, PullVenue):
                await self._move(message.room, message.venue, state.name, chair.venue)
            elif isinstance(message, ReturnVenue):
                home = state.member(message.venue).guest_from
                if home is None:
                    raise Refusal("invalid", f"{message.venue} was not pulled from a meeting")
                await self._move(state.name, message.venue, home, chair.venue)
            else:
                target_state = self.rooms.get(message.room)
                if target_state is None or message.room == state.name:
                    raise Refusal("not_found", f"no running meeting {message.room!r}")
                target_state.pushed_from = state.name if message.on else None
                await self._refresh(message.room)
        elif isinstance(message, Recording):
            if message.on:
                self._start_recording(state)
            elif not self._stop_recording(state.name):
                raise Refusal("state", "the room is not being recorded")
        await self._refresh(state.name)

    async def _move(self, from_room: str, venue: str, to_room: str, by: str) -> None:
        source_state = self.rooms.get(from_room)
        participant = self.by_ref.get((from_room, venue))
        if source_state is None or participant is None or venue not in source_state.members:
            raise Refusal("not_found", f"no venue {venue!r} in a running meeting {from_room!r}")
        target_state = self.rooms[to_room]
        if venue in target_state.members:
            raise Refusal("conflict", f"{to_room} already has a venue named {venue!r}")
        member = source_state.remove(venue)
        assert member is not None
        self.detectors[from_room].forget(venue)
        # The command room takes a pulled venue even when locked: it is the chair's act.
        member.guest_from = from_room if to_room == self.command_room else None
        target_state.members[venue] = member
        del self.by_ref[participant.ref]
        participant.room = to_room
        self.by_ref[participant.ref] = participant
        await participant.connection.send(Moved(room=to_room, by=by))
        await self._presence(participant, "move", previous_room=from_room)
        await self._refresh(from_room)
        await self._refresh(to_room)

    # -- recording -----------------------------------------------------------------

    def _start_recording(self, state: RoomState) -> None:
        if self.handover is None:
            raise Refusal("unavailable", "recording needs the vod service, which is not installed")
        if state.name in self.recorders:
            raise Refusal("state", "the room is already being recorded")
        recorder = MeetingRecorder(state.name, self.recordings_dir / uuid.uuid4().hex)
        recorder.start()
        self.recorders[state.name] = recorder
        state.recording = True
        log.info("conference.recording_started", room=state.name)

    def _stop_recording(self, room: str) -> bool:
        recorder = self.recorders.pop(room, None)
        if recorder is None:
            return False
        state = self.rooms.get(room)
        if state is not None:
            state.recording = False
        # Muxing, mixing and the copy into vod take seconds: not in the chair's request.
        task = asyncio.get_running_loop().create_task(
            self._finish_recording(recorder), name=f"conference.recording.{room}"
        )
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return True

    def _follow_recording(self, state: RoomState) -> None:
        """The recorder takes the main picture the room shows and every venue's sound."""
        recorder = self.recorders.get(state.name)
        if recorder is None:
            return
        main = self._pushed_main(state)
        if main is None:
            venue = state.effective_main()
            main = (state.name, venue) if venue is not None else None
        source = self.by_ref.get(main) if main is not None else None
        picture = source.peer.video if source is not None and source.peer is not None else None
        sound = {}
        for venue in state.members:
            participant = self.by_ref.get((state.name, venue))
            if participant is not None and participant.peer is not None:
                if participant.peer.audio is not None:
                    sound[venue] = participant.peer.audio
        recorder.follow(picture, sound)

    async def _finish_recording(self, recorder: MeetingRecorder) -> int | None:
        output = recorder.workdir / "meeting.mkv"
        try:
            result = await recorder.stop(output)
            started = dt.datetime.fromtimestamp(result.started_at, dt.UTC)
            assert self.handover is not None
            job = await self.handover(
                output,
                title=f"{recorder.room} {started.astimezone():%Y-%m-%d %H:%M}",
                broadcast_at=started,
            )
        except (RecordingError, LookupError, ValueError) as exc:
            log.warning("conference.recording_lost", room=recorder.room, error=str(exc))
            return None
        except Exception:
            log.exception("conference.recording_lost", room=recorder.room)
            return None
        finally:
            recorder.discard()
        log.info(
            "conference.recording_handed_over",
            room=recorder.room,
            job=job,
            seconds=round(result.seconds, 1),
            venues=result.venues,
            dropped=recorder.dropped,
        )
        return job

    # -- layouts and room events ---------------------------------------------------

    def _room_state(
        self, name: str, kind: RoomKind, locked: bool, main_venue: str | None
    ) -> RoomState:
        state = self.rooms.get(name)
        if state is None:
            state = RoomState(
                name,
                always_open=kind is RoomKind.COMMAND,
                locked=locked and kind is not RoomKind.COMMAND,
                main_venue=main_venue,
            )
            self.rooms[name] = state
            self.detectors[name] = SpeakerDetector()
        return state

    def _pushed_main(self, state: RoomState) -> SourceRef | None:
        if state.pushed_from is None:
            return None
        source = self.rooms.get(state.pushed_from)
        main = source.effective_main() if source is not None else None
        return (state.pushed_from, main) if main is not None else None

    async def _refresh(self, room: str, *, follow_pushes: bool = True) -> None:
        state = self.rooms.get(room)
        if state is None:
            return
        pushed = self._pushed_main(state)
        last_n = self.settings.conference_last_n
        for venue in list(state.members):
            participant = self.by_ref.get((room, venue))
            if participant is None or participant.peer is None:
                continue
            layout = state.layout_for(venue, last_n, pushed)
            if layout != participant.layout:
                self._apply_layout(participant.peer, layout)
                participant.layout = layout
                await participant.connection.send(
                    Layout(
                        slots=[
                            SlotSource(
                                index=i, room=ref[0] if ref else None, venue=ref[1] if ref else None
                            )
                            for i, ref in enumerate(layout)
                        ],
                        speaker=state.speakers[0] if state.speakers else None,
                    )
                )
        self._follow_recording(state)
        await self._announce(room)
        if follow_pushes:
            for other in list(self.rooms.values()):
                if other.pushed_from == room:
                    await self._refresh(other.name, follow_pushes=False)

    def _apply_layout(self, peer: Peer, layout: list[SourceRef | None]) -> None:
        for (audio_slot, video_slot), ref in zip(peer.slots, layout, strict=False):
            source = self.by_ref.get(ref) if ref is not None else None
            source_peer = source.peer if source is not None else None
            audio_slot.switch(source_peer.audio if source_peer else None)
            video_slot.switch(source_peer.video if source_peer else None)

    async def _announce(self, room: str) -> None:
        state = self.rooms.get(room)
        if state is None:
            return
        event = RoomEvent(
            room=room,
            locked=state.locked,
            main=state.effective_main(),
            pushed_from=state.pushed_from,
            recording=state.recording,
            venues=[
                VenueInfo(
                    venue=m.venue,
                    role=m.role.value,
                    muted=m.muted_by_chair,  # type: ignore[arg-type]
                    audio=m.audio_on,
                    video=m.video_on,
                    sharing=m.sharing,
                    guest_from=m.guest_from,
                )
                for m in sorted(state.members.values(), key=lambda m: m.seq)
            ],
        )
        for venue in list(state.members):
            participant = self.by_ref.get((room, venue))
            if participant is not None:
                await participant.connection.send(event)

    # -- active speaker ------------------------------------------------------------

    def _heard(self, participant: Participant, level_dbov: int) -> None:
        detector = self.detectors.get(participant.room)
        if detector is not None and not participant.gone:
            detector.feed(participant.venue, level_dbov)

    async def _speaker_loop(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_TICK_SECONDS)
            for room, detector in list(self.detectors.items()):
                speaker = detector.tick()
                state = self.rooms.get(room)
                if speaker is not None and state is not None and state.note_speaker(speaker):
                    async with self._lock:
                        await self._refresh(room)

    # -- presence (any node can say who is where) ------------------------------------

    async def _presence(
        self, participant: Participant, action: str, previous_room: str | None = None
    ) -> None:
        if previous_room is not None:
            await self.ctx.state.hdel(presence_key(previous_room), participant.venue)
        if action == "leave":
            await self.ctx.state.hdel(presence_key(participant.room), participant.venue)
        else:
            await self._write_presence(participant)
        await self.ctx.bus.publish(
            PresenceChanged(
                room=participant.room, venue=participant.venue, node=self.node, action=action
            )
        )

    async def _write_presence(self, participant: Participant) -> None:
        record = {"role": participant.role.value, "node": self.node, "since": int(time.time())}
        await self.ctx.state.hset(
            presence_key(participant.room),
            participant.venue,
            json.dumps(record),
            ttl=PRESENCE_TTL_SECONDS,
        )

    async def _presence_loop(self) -> None:
        # Entries expire unless refreshed, so a crashed node's venues disappear.
        while True:
            await asyncio.sleep(PRESENCE_TTL_SECONDS / 3)
            for participant in list(self.by_connection.values()):
                with contextlib.suppress(Exception):
                    await self._write_presence(participant)


async def who_is_where(ctx: AppContext, room: str) -> dict[str, dict[str, object]]:
    """Venues in ``room`` on every node, from shared state."""
    entries = await ctx.state.hgetall(presence_key(room))
    result: dict[str, dict[str, object]] = {}
    for venue, raw in entries.items():
        with contextlib.suppress(ValueError):
            result[venue] = json.loads(raw)
    return result


def _alert_event_type() -> type[Event] | None:
    """The SMS alert event, if the sms service is installed (its published event module)."""
    try:
        from sms import AlertPublished
    except ImportError:
        return None
    return AlertPublished
