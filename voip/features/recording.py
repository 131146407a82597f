"""Per-extension call recording, in the RTP relay: no media worker, no transcoding.

An extension whose ``record_calls`` setting is on has every call recorded. A call
between phones normally carries its media phone to phone, so a recorded extension's
internal calls are *anchored* (:meth:`CallRecordings.anchor`): the call's SDP names
an internal :class:`voip.rtp_relay.RtpRelay` pair of sockets, exactly as a trunk
call's does. The relay already sees both directions of every anchored call (trunk
calls included), so a :class:`CallRecorder` hooked on it decodes the G.711 payloads
(a 256-entry table per packet) into two channel files, placed by RTP timestamp;
when the call ends they become one stereo WAV (left: the caller's side, right: the
callee's) in a thread, and a row per recorded extension lists it (date, peer,
duration). Recording starts when the call is answered and ends with the call.

Recordings older than ``voip_recording_days`` are deleted (rows and files) by a
sweep every hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from sqlalchemy import delete, or_, select

from core.db import Database
from media.audio import alaw_decode, ulaw_decode

from ..accounts import Account, Accounts
from ..routing import Forward, Route
from ..rtp_relay import RelayedCall, RtpRelay
from .models import CallRecordingRow
from .settings import FeatureStore

if TYPE_CHECKING:
    from ..b2bua import Call

log = structlog.get_logger("voip.features")

RATE = 8000
# G.711 by static payload type (RFC 3551); other payloads (DTMF, comfort noise) are not sound.
_TABLES = {0: ulaw_decode(bytes(range(256))), 8: alaw_decode(bytes(range(256)))}
# A packet whose timestamp puts it further than this from its arrival time starts a new run.
_DRIFT = RATE * 2
_CHUNK = RATE * 60
SWEEP_SECONDS = 3600.0


@dataclass
class _Channel:
    ssrc: bytes = b""
    base_ts: int = 0
    base_pos: int = 0
    end: int = 0  # samples written (the channel's length so far)


class CallRecorder:
    """Both directions of a relayed call: ``packet(direction, rtp)`` while it talks.

    Each direction goes to its own file of 16-bit samples at the position its RTP
    timestamp names (relative to its first packet, placed by arrival time), so a lost
    packet leaves silence and the two channels stay aligned. :meth:`finish` (blocking:
    run it in a thread) interleaves them into a stereo WAV.
    """

    def __init__(self, folder: Path, name: str, clock: Callable[[], float] = time.monotonic):
        self.folder = folder
        self.name = name
        self.clock = clock
        self.recording = False
        self.packets = 0
        self.started = 0.0
        self._channels = [_Channel(), _Channel()]
        self._files: list[Any] = []

    @property
    def raw_paths(self) -> list[Path]:
        return [self.folder / f"{self.name}.{side}.raw" for side in ("left", "right")]

    def start(self) -> None:
        if self.recording or self._files:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files = [path.open("w+b") for path in self.raw_paths]
        self.started = self.clock()
        self.recording = True

    def packet(self, direction: int, data: bytes) -> None:
        if not self.recording or len(data) < 12 or data[0] >> 6 != 2:
            return
        table = _TABLES.get(data[1] & 0x7F)
        if table is None:
            return
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= offset + 4:  # a header extension
            offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
        if end <= offset:
            return
        samples = table[np.frombuffer(data, np.uint8, end - offset, offset)]
        timestamp = int.from_bytes(data[4:8], "big")
        ssrc = data[8:12]
        channel = self._channels[direction]
        arrival = int((self.clock() - self.started) * RATE)
        position = channel.base_pos + ((timestamp - channel.base_ts) & 0xFFFFFFFF)
        if ssrc != channel.ssrc or abs(position - arrival) > _DRIFT:
            # A new source (a transfer, music on hold) or a jump: placed by arrival.
            channel.ssrc, channel.base_ts, channel.base_pos = ssrc, timestamp, arrival
            position = arrival
        handle = self._files[direction]
        handle.seek(position * 2)
        handle.write(samples.tobytes())
        channel.end = max(channel.end, position + len(samples))
        self.packets += 1

    def stop(self) -> None:
        self.recording = False
        for handle in self._files:
            handle.close()

    def finish(self, path: Path) -> float | None:
        """The stereo WAV at ``path``: its length in seconds; None (and nothing) if silent."""
        self.stop()
        try:
            length = max(channel.end for channel in self._channels)
            if self.packets == 0 or length == 0:
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            left, right = (
                np.memmap(raw, np.int16, "r") if raw.stat().st_size else np.zeros(0, np.int16)
                for raw in self.raw_paths
            )
            partial = path.with_suffix(".partial")
            with wave.open(str(partial), "wb") as out:
                out.setnchannels(2)
                out.setsampwidth(2)
                out.setframerate(RATE)
                for start in range(0, length, _CHUNK):
                    stop = min(start + _CHUNK, length)
                    frame = np.zeros((stop - start, 2), np.int16)
                    for index, channel in enumerate((left, right)):
                        piece = channel[start:stop]
                        frame[: len(piece), index] = piece
                    out.writeframes(frame.tobytes())
            del left, right
            partial.replace(path)  # listed only once complete
            return length / RATE
        finally:
            for raw in self.raw_paths:
                raw.unlink(missing_ok=True)

    def discard(self) -> None:
        self.stop()
        for raw in self.raw_paths:
            raw.unlink(missing_ok=True)


@dataclass(eq=False)
class _Recording:
    recorder: CallRecorder
    relay: RelayedCall
    owners: list[str]
    started_at: dt.datetime | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)


def relay_of(route: Forward | None) -> RelayedCall | None:
    """The relay an anchored route rewrites its SDP for (the trunk's, or ours)."""
    rewrite = route.rewrite_outward if route is not None else None
    relay = getattr(rewrite, "__self__", None)
    return relay if isinstance(relay, RelayedCall) else None


def _remove(paths: set[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)


class CallRecordings:
    def __init__(
        self,
        db: Database,
        store: FeatureStore,
        accounts: Accounts,
        folder: Path,
        *,
        retention_days: int,
        media_host: str | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.accounts = accounts
        self.folder = folder
        self.retention_days = retention_days
        self.media_host = media_host  # calls to media workers (voicemail...) are not recorded
        self.relay: RtpRelay | None = None
        self.relays: dict[str, RelayedCall] = {}  # ours, by the caller's Call-ID
        self.active: dict[str, _Recording] = {}  # by the caller's Call-ID
        self._tasks: set[asyncio.Task[None]] = set()

    def records(self, number: str) -> bool:
        return self.store.get(number).record_calls

    def wants(self, caller: Account, callee: Account) -> bool:
        """Whether a call between these two is recorded (so its media must be anchored)."""
        return self.relay is not None and (
            self.records(caller.number) or self.records(callee.number)
        )

    # -- routing: anchor the media of a recorded extension's internal call -----------------

    async def anchor(self, caller: Account, route: Forward, call_id: str) -> Forward:
        """``route`` through the internal relay when a party records and nothing anchors it."""
        if self.relay is None or route.rewrite_outward is not None:
            return route  # no relay here, or anchored already (the trunk): recorded at answer
        if not self.wants(caller, route.callee):
            return route
        if any(flow.host == self.media_host for _, flow in route.targets):
            return route  # voicemail, IVR: a machine, not a conversation
        relayed = await self.relay.open(outside_host=self.relay.inside_host)
        route.rewrite_outward = relayed.rewrite_outward
        route.rewrite_inward = relayed.rewrite_inward
        relay = self.relay
        self.relays[call_id] = relayed

        def closed() -> None:
            relay.close(relayed)
            if self.relays.get(call_id) is relayed:
                del self.relays[call_id]

        route.on_call_end.append(closed)
        return route

    async def anchor_route(self, caller: Account, route: Route, call_id: str) -> Route:
        """``route`` anchored if need be, and each of its next steps (forwarding) too."""
        if isinstance(route, Forward):
            route = await self.anchor(caller, route, call_id)
            ask = route.next_step
            if ask is not None:

                async def next_step(status: int) -> Route:
                    return await self.anchor_route(caller, await ask(status), call_id)

                route.next_step = next_step
        return route

    # -- the call's life: the core's watcher --------------------------------------------------

    def watch(self, call: Call) -> None:
        if call.state == "answered":
            self._answered(call)
        elif call.state == "ended":
            recording = self.active.pop(call.id, None)
            if recording is not None:
                self._spawn(self._finish(call, recording))

    def _answered(self, call: Call) -> None:
        owners = [
            account.number
            for account in (call.caller, call.callee)
            if account.id != 0 and self.records(account.number)
        ]
        # Ours (an internal call; an inbound trunk call composes the trunk's relay in front),
        # else the route's own (an outbound trunk call).
        relay = self.relays.get(call.id) or relay_of(call.route)
        current = self.active.get(call.id)
        if current is not None:
            # Answered again (a transfer): the new callee may record too.
            current.owners.extend(o for o in owners if o not in current.owners)
            return
        if not owners or relay is None:
            return
        name = hashlib.sha256(call.id.encode()).hexdigest()[:24]
        recorder = CallRecorder(self.folder / "partial", name)
        recording = _Recording(recorder, relay, owners, dt.datetime.now(dt.UTC))
        relay.recorder = recorder
        recorder.start()
        self.active[call.id] = recording
        log.info("recording.started", call_id=call.id, owners=owners)

    async def _finish(self, call: Call, recording: _Recording) -> None:
        recording.relay.recorder = None
        started = recording.started_at or dt.datetime.now(dt.UTC)
        day = started.strftime("%Y-%m-%d")
        path = self.folder / day / f"{started.strftime('%H%M%S')}-{recording.recorder.name}.wav"
        try:
            seconds = await asyncio.to_thread(recording.recorder.finish, path)
        except Exception:
            log.exception("recording.failed", call_id=call.id)
            return
        if seconds is None:
            log.info("recording.empty", call_id=call.id)
            return
        size = path.stat().st_size
        parties = (call.caller.number, call.callee.number)
        async with self.db.session() as session:
            for owner in recording.owners:
                outgoing = owner == call.caller.number
                session.add(
                    CallRecordingRow(
                        extension=owner,
                        peer=(parties[1] if outgoing else parties[0])[:64],
                        direction="outgoing" if outgoing else "incoming",
                        call_id=call.id[:200],
                        started_at=started,
                        duration_seconds=round(seconds, 2),
                        path=str(path),
                        size_bytes=size,
                    )
                )
        log.info("recording.saved", call_id=call.id, owners=recording.owners, seconds=seconds)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for recordings being written (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stop(self) -> None:
        for recording in self.active.values():
            recording.relay.recorder = None
            recording.recorder.discard()
        self.active.clear()

    # -- the list, downloads and retention ------------------------------------------------------

    async def of_extension(self, number: str, limit: int = 200) -> list[CallRecordingRow]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(CallRecordingRow)
                .where(CallRecordingRow.extension == number)
                .order_by(CallRecordingRow.started_at.desc(), CallRecordingRow.id.desc())
                .limit(limit)
            )
            return list(rows.all())

    async def recent(self, limit: int = 100) -> list[CallRecordingRow]:
        """The newest recordings of every extension (the console's list)."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(CallRecordingRow)
                .order_by(CallRecordingRow.started_at.desc(), CallRecordingRow.id.desc())
                .limit(limit)
            )
            return list(rows.all())

    async def get(self, recording_id: int) -> CallRecordingRow | None:
        async with self.db.session() as session:
            return await session.get(CallRecordingRow, recording_id)

    async def sweep(self, now: dt.datetime | None = None) -> int:
        """Delete recordings past the retention period; how many rows went."""
        cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=self.retention_days)
        async with self.db.session() as session:
            old = (
                await session.execute(
                    select(CallRecordingRow.id, CallRecordingRow.path).where(
                        CallRecordingRow.started_at < cutoff
                    )
                )
            ).all()
            if not old:
                return 0
            await session.execute(
                delete(CallRecordingRow).where(CallRecordingRow.id.in_([r.id for r in old]))
            )
            paths = {r.path for r in old}
            still = (
                await session.scalars(
                    select(CallRecordingRow.path).where(
                        or_(*(CallRecordingRow.path == p for p in paths))
                    )
                )
            ).all()
        await asyncio.to_thread(_remove, paths - set(still))
        log.info("recording.swept", rows=len(old), files=len(paths - set(still)))
        return len(old)

    async def run_sweeps(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("recording.sweep_failed")
            await asyncio.sleep(SWEEP_SECONDS)
