"""Escalation: recipients who have not acknowledged after N minutes are called, and/or the
alert goes to a backup group, once per broadcast.

A broadcast asks for it (``escalate_after_seconds`` with ``escalate_call`` and/or
``escalate_group``); ``escalate_at`` is set when its sending begins (at creation, or
at the second officer's approval). The runner (one per node, :class:`EscalationRunner`)
then works from the database alone, so any node may do it and a restart loses nothing:

- **The wave** is one transaction: ``escalated_at`` is set by a guarded UPDATE
  (``WHERE escalated_at IS NULL``), and in the same transaction one call row per
  unacknowledged recipient (``sms_escalation_calls``, unique per recipient) and the
  backup group's new recipients (``wave = 1``; the unique (broadcast, mobile) keeps
  anyone who already got the alert from getting it twice) are written. A crash
  before the commit leaves nothing (the wave runs again); after it, everything.
- **A call** goes ``pending -> claimed`` (committed, with a short lease) before
  anything else; ``claimed -> dialling`` is committed by ``voip.place_call``'s
  ``before_dial`` hook, the moment before the number rings, and refused if the
  recipient acknowledged meanwhile. The outcome (answered, busy, no answer, failed)
  is then written, guarded by state and claimant.
- **Acknowledged by key**: the spoken alert ends with "press 1 to confirm"; the key
  (RFC 4733, collected by voip) is committed at once, like an SMS reply: the
  recipient ``acknowledged`` (``acknowledged_via = "call"``) and an ``sms_inbound``
  row (``channel = "call"``), before the callee hears "confirmed". The outcome's
  keys are written again with the outcome (idempotent), so a failed first write is
  made good. Answered without the key: ``answered``, still unacknowledged.
- **Called again**: a call that rang unanswered or busy goes back to ``pending`` for
  ``call_retries`` more calls, ``call_retry_seconds`` apart (``dial_count`` counts the
  calls), through the same claim and dialling discipline; a recipient who
  acknowledges meanwhile, by any channel, is not called again (``skipped``).
- **After a crash** a ``claimed`` row whose lease ran out never rang: it is called
  again. A ``dialling`` row whose lease (ring time + the longest call + a margin)
  ran out may have rung: it becomes ``interrupted`` and is never called again. No
  one is called twice for one alert.
- A call that voip could not even start (the media workers full, the exchange
  down) rang nobody: it is tried again a few times before its outcome is recorded.

Services reach each other only through exported functions: the runner's dialer is
``voip.place_call``, bound in ``sms.setup`` when voip is installed (None otherwise,
and escalation by call is refused when a broadcast asks for it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy import and_, exists, insert, select, update

from core.db import Database, utcnow
from sms.models import (
    Broadcast,
    BroadcastStatus,
    CallState,
    Contact,
    EscalationCall,
    Group,
    InboundMessage,
    Recipient,
)
from sms.states import DeliveryState

log = structlog.get_logger("sms.escalation")

CALLS = EscalationCall.__table__
OPEN_CALLS = (CallState.PENDING, CallState.CLAIMED, CallState.DIALLING)
# Recipients that still owe an acknowledgement (cancelled ones were never texted).
NOT_ESCALATED = (DeliveryState.ACKNOWLEDGED, DeliveryState.CANCELLED)
WAVE_BATCH = 20

# What the callee hears: the alert framed so that it is understood as one, ending
# with the key that acknowledges it; and what they hear once that key is recorded.
ACK_KEY = "1"
SPOKEN = {
    "zh": "紧急通知。{text}。收到请按1。",
    "en": "Urgent notice. {text}. Press 1 to confirm you received this alert.",
}
CONFIRMED = {"zh": "确认收到。", "en": "Confirmed."}
CALLER_NAME = {"zh": "应急值班室", "en": "Duty office"}
RETRYABLE = ("busy", "no_answer")  # it rang (or was refused by the phone): call again later


@dataclass(frozen=True)
class DialResult:
    """What a dialer reports (voip's CallOutcome, as sms keeps it)."""

    result: str  # answered, busy, no_answer, failed, cancelled
    dialled: bool
    sip_status: int | None = None
    detail: str = ""
    call_id: str | None = None
    talk_seconds: float = 0.0
    digits: str = ""  # keys the callee pressed


class Dialer(Protocol):
    """Rings ``number`` and reads ``text``; a press of ``ack_key`` is handed to ``on_ack``
    (True: recorded) and then answered with ``ack_reply`` before the hang-up."""

    async def __call__(
        self,
        *,
        number: str,
        text: str,
        language: str,
        caller_name: str,
        ring_seconds: float,
        max_seconds: float,
        before_dial: Callable[[], Awaitable[bool]],
        ack_key: str,
        ack_reply: str,
        on_ack: Callable[[str], Awaitable[bool]],
    ) -> DialResult: ...


@dataclass(frozen=True)
class ClaimedCall:
    id: int
    broadcast_id: int
    recipient_id: int
    number: str
    language: str
    attempts: int  # claims so far, this one included
    dial_count: int  # calls that were dialled before this one


def spoken_text(body: str, language: str) -> str:
    return SPOKEN["en" if language == "en" else "zh"].format(text=body.strip().rstrip("。."))


class EscalationRunner:
    def __init__(
        self,
        db: Database,
        dialer: Dialer | None,
        *,
        node: str = "",
        on_new_recipients: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.dialer = dialer
        self.run_id = f"{node or 'node'}-esc-{uuid.uuid4().hex[:10]}"[:64]
        self.on_new_recipients = on_new_recipients
        self.wake = asyncio.Event()
        self._skip_locked = db.backend == "postgresql"
        self._in_flight: set[asyncio.Task[None]] = set()
        # Tunables (tests shorten them).
        self.poll_seconds = 1.0
        self.concurrency = 4  # calls at once per node: the media pool serves phones too
        self.ring_seconds = 30.0
        self.max_call_seconds = 300.0
        self.claim_lease_seconds = 120.0  # speech and a media slot take well under this
        self.retry_seconds = 15.0
        self.max_attempts = 5  # of calls that could not be started (nothing rang)
        self.call_retries = 2  # more calls after one that rang unanswered or busy
        self.call_retry_seconds = 300.0  # between those calls

    @property
    def dialling_lease(self) -> dt.timedelta:
        # Longer than place_call can take (ring + longest call + its margin), with room.
        return dt.timedelta(seconds=self.ring_seconds + self.max_call_seconds + 60)

    # ------------------------------------------------------------ main loop

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("sms.escalation_tick_failed")
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def tick(self) -> None:
        await self.run_due_waves()
        await self.reopen()
        await self.recover()
        await self.skip_acknowledged()
        free = self.concurrency - len(self._in_flight)
        if free > 0:
            for row in await self.claim(free):
                task = asyncio.ensure_future(self.call(row))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def drain(self) -> None:
        """Wait for the calls in flight (tests)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    # ------------------------------------------------------------ waves

    async def run_due_waves(self) -> int:
        now = utcnow()
        async with self.db.session() as session:
            due = list(
                await session.scalars(
                    select(Broadcast.id)
                    .where(
                        Broadcast.escalate_at <= now,
                        Broadcast.escalated_at.is_(None),
                        Broadcast.status.in_([BroadcastStatus.SENDING, BroadcastStatus.COMPLETED]),
                    )
                    .order_by(Broadcast.escalate_at)
                    .limit(WAVE_BATCH)
                )
            )
        ran = 0
        for broadcast_id in due:
            ran += await self.run_wave(broadcast_id)
        return ran

    async def run_wave(self, broadcast_id: int) -> int:
        """The escalation wave of one broadcast, in one transaction; 1 if this call ran it."""
        now = utcnow()
        added = 0
        async with self.db.session() as session:
            taken = await session.execute(
                update(Broadcast)
                .where(
                    Broadcast.id == broadcast_id,
                    Broadcast.escalated_at.is_(None),
                    Broadcast.escalate_at <= now,
                    Broadcast.status.in_([BroadcastStatus.SENDING, BroadcastStatus.COMPLETED]),
                )
                .values(escalated_at=now)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return 0  # another node ran it (or it was cancelled meanwhile)
            broadcast = await session.get(Broadcast, broadcast_id)
            assert broadcast is not None
            unacknowledged = (
                await session.execute(
                    select(Recipient.id, Recipient.mobile, Contact.extension, Contact.language)
                    .outerjoin(Contact, Contact.id == Recipient.contact_id)
                    .where(
                        Recipient.broadcast_id == broadcast_id,
                        Recipient.wave == 0,
                        Recipient.state.not_in(NOT_ESCALATED),
                    )
                    .order_by(Recipient.id)
                )
            ).all()
            notes: list[str] = []
            if not unacknowledged:
                notes.append("everyone had acknowledged")
            else:
                notes.append(f"{len(unacknowledged)} unacknowledged")
                if broadcast.escalate_call:
                    rows = [
                        {
                            "broadcast_id": broadcast_id,
                            "recipient_id": r.id,
                            "number": (r.extension or r.mobile)[:32],
                            "language": r.language or "zh",
                            "state": CallState.PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "claimed_by": "",
                            "detail": "",
                            "created_at": now,
                        }
                        for r in unacknowledged
                    ]
                    for start in range(0, len(rows), 1000):
                        await session.execute(insert(EscalationCall), rows[start : start + 1000])
                    notes.append(f"{len(rows)} to call")
                if broadcast.escalate_group:
                    added = await self._backup_wave(session, broadcast, now)
                    notes.append(
                        f"backup group {broadcast.escalate_group}: {added} more texted"
                        if added >= 0
                        else f"no backup group {broadcast.escalate_group!r}"
                    )
            broadcast.escalation_note = "; ".join(notes)[:200]
        log.info("sms.escalation_wave", broadcast=broadcast_id, note="; ".join(notes))
        if added > 0 and self.on_new_recipients is not None:
            self.on_new_recipients()
        self.wake.set()
        return 1

    async def reopen(self) -> None:
        """A broadcast completed while its backup wave was being added goes on sending.

        (On PostgreSQL the engine's "nothing left: completed" may read a snapshot from
        before the wave's commit.)
        """
        queued = exists().where(
            Recipient.broadcast_id == Broadcast.id, Recipient.state == DeliveryState.QUEUED
        )
        stuck = (
            Broadcast.status == BroadcastStatus.COMPLETED,
            Broadcast.escalate_group != "",
            Broadcast.escalated_at > utcnow() - dt.timedelta(days=1),
            queued,
        )
        # Read first: an UPDATE that matches nothing still takes SQLite's write lock.
        async with self.db.session() as session:
            if await session.scalar(select(Broadcast.id).where(*stuck).limit(1)) is None:
                return
            reopened = await session.execute(
                update(Broadcast)
                .where(*stuck)
                .values(status=BroadcastStatus.SENDING, completed_at=None)
                .execution_options(synchronize_session=False)
            )
        if reopened.rowcount and self.on_new_recipients is not None:  # type: ignore[attr-defined]
            self.on_new_recipients()

    async def _backup_wave(self, session: Any, broadcast: Broadcast, now: dt.datetime) -> int:
        """Queue the alert for the backup group's members not already among its recipients."""
        from sms.service import group_members  # the directory's own resolution

        group = await session.scalar(select(Group).where(Group.name == broadcast.escalate_group))
        if group is None:
            return -1
        members = await group_members(session, group, now)
        already = set(
            await session.scalars(
                select(Recipient.mobile).where(Recipient.broadcast_id == broadcast.id)
            )
        )
        rows = []
        for contact in members:
            if contact.mobile in already:
                continue  # texted once already (or acknowledged): never twice
            already.add(contact.mobile)
            rows.append(
                {
                    "broadcast_id": broadcast.id,
                    "contact_id": contact.id,
                    "name": contact.name,
                    "mobile": contact.mobile,
                    "state": DeliveryState.QUEUED,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "claimed_by": "",
                    "error": "",
                    "updated_at": now,
                    "wave": 1,
                }
            )
        if rows:
            await session.execute(insert(Recipient), rows)
            broadcast.recipient_count += len(rows)
            if broadcast.status is BroadcastStatus.COMPLETED:
                broadcast.status = BroadcastStatus.SENDING
                broadcast.completed_at = None
        return len(rows)

    # ------------------------------------------------------------ calls

    async def recover(self) -> None:
        """Rows whose claimant vanished (its lease ran out): retried only if nothing rang."""
        now = utcnow()
        async with self.db.engine.connect() as conn:
            expired = await conn.scalar(
                select(CALLS.c.id)
                .where(
                    CALLS.c.state.in_([CallState.CLAIMED, CallState.DIALLING]),
                    CALLS.c.lease_until < now,
                )
                .limit(1)
            )
        if expired is None:
            return  # read first: an UPDATE that matches nothing still takes SQLite's lock
        async with self.db.engine.begin() as conn:
            back = await conn.execute(
                update(CALLS)
                .where(CALLS.c.state == CallState.CLAIMED, CALLS.c.lease_until < now)
                .values(state=CallState.PENDING, claimed_by="", lease_until=None)
            )
            lost = await conn.execute(
                update(CALLS)
                .where(CALLS.c.state == CallState.DIALLING, CALLS.c.lease_until < now)
                .values(
                    state=CallState.INTERRUPTED,
                    ended_at=now,
                    lease_until=None,
                    detail="the server stopped during the call; not called again",
                )
            )
        if back.rowcount or lost.rowcount:
            log.warning(
                "sms.escalation_recovered", retried=back.rowcount, interrupted=lost.rowcount
            )

    async def skip_acknowledged(self) -> int:
        """Calls still to make (first or again) of recipients who acknowledged: skipped now.

        (A claimed call would be skipped anyway, before it rings; this makes the page say
        so at once, not when the next call was due.)
        """
        acknowledged = exists().where(
            Recipient.id == CALLS.c.recipient_id, Recipient.state == DeliveryState.ACKNOWLEDGED
        )
        async with self.db.engine.connect() as conn:
            found = await conn.scalar(
                select(CALLS.c.id).where(CALLS.c.state == CallState.PENDING, acknowledged).limit(1)
            )
        if found is None:
            return 0  # read first: an UPDATE that matches nothing still takes SQLite's lock
        now = utcnow()
        skipped = 0
        async with self.db.engine.begin() as conn:
            for called, detail in ((False, SKIPPED_FIRST), (True, SKIPPED_AGAIN)):
                done = await conn.execute(
                    update(CALLS)
                    .where(
                        CALLS.c.state == CallState.PENDING,
                        (CALLS.c.dial_count > 0) if called else (CALLS.c.dial_count == 0),
                        acknowledged,
                    )
                    .values(state=CallState.SKIPPED, ended_at=now, detail=detail)
                )
                skipped += int(done.rowcount or 0)
        if skipped:
            log.info("sms.escalation_skipped", calls=skipped)
        return skipped

    async def claim(self, limit: int) -> list[ClaimedCall]:
        now = utcnow()
        async with self.db.engine.connect() as conn:
            any_due = await conn.scalar(
                select(CALLS.c.id)
                .where(CALLS.c.state == CallState.PENDING, CALLS.c.next_attempt_at <= now)
                .limit(1)
            )
        if any_due is None:
            return []
        due = (
            select(CALLS.c.id)
            .where(CALLS.c.state == CallState.PENDING, CALLS.c.next_attempt_at <= now)
            .order_by(CALLS.c.next_attempt_at)
            .limit(limit)
        )
        if self._skip_locked:
            due = due.with_for_update(skip_locked=True)
        chosen = due.cte("due")
        query = (
            update(CALLS)
            .where(CALLS.c.id == chosen.c.id, CALLS.c.state == CallState.PENDING)
            .values(
                state=CallState.CLAIMED,
                claimed_by=self.run_id,
                attempts=CALLS.c.attempts + 1,
                lease_until=now + dt.timedelta(seconds=self.claim_lease_seconds),
            )
            .returning(
                CALLS.c.id,
                CALLS.c.broadcast_id,
                CALLS.c.recipient_id,
                CALLS.c.number,
                CALLS.c.language,
                CALLS.c.attempts,
                CALLS.c.dial_count,
            )
        )
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(query)).all()
        return [ClaimedCall(*row) for row in rows]

    def _acknowledged(self, recipient_id: int) -> Any:
        return exists().where(
            Recipient.id == recipient_id, Recipient.state == DeliveryState.ACKNOWLEDGED
        )

    async def _mark_dialling(self, row: ClaimedCall) -> bool:
        """Committed just before the number rings; False (nothing rings) if it may not."""
        now = utcnow()
        async with self.db.engine.begin() as conn:
            marked = await conn.execute(
                update(CALLS)
                .where(
                    CALLS.c.id == row.id,
                    CALLS.c.state == CallState.CLAIMED,
                    CALLS.c.claimed_by == self.run_id,
                    ~self._acknowledged(row.recipient_id),
                )
                .values(
                    state=CallState.DIALLING,
                    dialled_at=now,
                    lease_until=now + self.dialling_lease,
                    dial_count=CALLS.c.dial_count + 1,
                )
            )
        return bool(marked.rowcount)

    async def acknowledge(self, row: ClaimedCall, key: str) -> bool:
        """The callee pressed the key: acknowledged as an SMS reply acknowledges.

        In one transaction: the recipient ``acknowledged`` (``sms.service.acknowledge``, as
        for a reply: one acknowledged already stays as they were), a ``sms_inbound`` row with
        ``channel = "call"`` (one per call: ``provider_sid`` names it, so writing it again
        changes nothing), and the key on the call. True when the recipient is acknowledged.
        """
        from sms.service import acknowledge  # the reply's own (sms.service imports this module)

        now = utcnow()
        sid = f"call-{row.id}-{row.attempts}"
        async with self.db.session() as session:
            marked = await acknowledge(session, row.recipient_id, "call")
            sid_taken = select(InboundMessage.id).where(InboundMessage.provider_sid == sid)
            if await session.scalar(sid_taken) is None:
                session.add(
                    InboundMessage(
                        provider_sid=sid,
                        channel="call",
                        from_mobile=row.number,
                        body=key,
                        recipient_id=row.recipient_id,
                        received_at=now,
                    )
                )
            await session.execute(
                update(CALLS)
                .where(CALLS.c.id == row.id, CALLS.c.claimed_by == self.run_id)
                .values(digits=key)
            )
            state = await session.scalar(
                select(Recipient.state).where(Recipient.id == row.recipient_id)
            )
        acknowledged = state is DeliveryState.ACKNOWLEDGED
        log.info(
            "sms.acknowledged",
            via="call",
            call=row.id,
            recipient=row.recipient_id,
            now=marked,
            acknowledged=acknowledged,
        )
        return acknowledged

    async def _finish(self, row: ClaimedCall, state: CallState, **values: Any) -> bool:
        async with self.db.engine.begin() as conn:
            done = await conn.execute(
                update(CALLS)
                .where(
                    CALLS.c.id == row.id,
                    CALLS.c.state.in_([CallState.CLAIMED, CallState.DIALLING]),
                    CALLS.c.claimed_by == self.run_id,
                )
                .values(state=state, lease_until=None, **values)
            )
        return bool(done.rowcount)

    async def call(self, row: ClaimedCall) -> None:
        try:
            await self._call(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease decides: retried if nothing rang, "interrupted" if it may have.
            log.exception("sms.escalation_call_failed", call=row.id)

    async def _call(self, row: ClaimedCall) -> None:
        async with self.db.session() as session:
            body = await session.scalar(
                select(Broadcast.body).where(Broadcast.id == row.broadcast_id)
            )
            acknowledged = await session.scalar(select(self._acknowledged(row.recipient_id)))
        if acknowledged:
            await self._finish(row, CallState.SKIPPED, ended_at=utcnow(), detail=_skipped(row))
            return
        if self.dialer is None:
            await self._finish(
                row,
                CallState.FAILED,
                ended_at=utcnow(),
                detail="no telephony service (voip) on this server",
            )
            return
        language = "en" if row.language == "en" else "zh"
        outcome = await self.dialer(
            number=row.number,
            text=spoken_text(str(body or ""), language),
            language=language,
            caller_name=CALLER_NAME[language],
            ring_seconds=self.ring_seconds,
            max_seconds=self.max_call_seconds,
            before_dial=lambda: self._mark_dialling(row),
            ack_key=ACK_KEY,
            ack_reply=CONFIRMED[language],
            on_ack=lambda key: self.acknowledge(row, key),
        )
        log.info(
            "sms.escalation_call",
            call=row.id,
            recipient=row.recipient_id,
            result=outcome.result,
            dialled=outcome.dialled,
            status=outcome.sip_status,
            digits=outcome.digits,
        )
        now = utcnow()
        if outcome.result == "cancelled":
            # before_dial refused: acknowledged meanwhile, or the row is no longer ours.
            async with self.db.session() as session:
                acknowledged = await session.scalar(select(self._acknowledged(row.recipient_id)))
            if acknowledged:
                await self._finish(row, CallState.SKIPPED, ended_at=now, detail=_skipped(row))
            return
        undialled = row.attempts - row.dial_count  # claims that rang nobody, this one too
        if not outcome.dialled and undialled < self.max_attempts:
            # Nothing rang (media workers full, the exchange down): safe to try again.
            await self._finish(
                row,
                CallState.PENDING,
                claimed_by="",
                next_attempt_at=now + dt.timedelta(seconds=self.retry_seconds),
                detail=f"attempt {row.attempts}: {outcome.detail}"[:200],
            )
            return
        calls = row.dial_count + (1 if outcome.dialled else 0)
        if ACK_KEY in outcome.digits:
            # Written when pressed; again here in case that write failed (idempotent).
            try:
                await self.acknowledge(row, ACK_KEY)
            except Exception:
                log.exception("sms.escalation_acknowledge_failed", call=row.id)
        if outcome.dialled and outcome.result in RETRYABLE and calls <= self.call_retries:
            # It rang unanswered (or the phone said busy): called again later, unless the
            # recipient acknowledges meanwhile (skip_acknowledged, and before_dial).
            again = now + dt.timedelta(seconds=self.call_retry_seconds)
            await self._finish(
                row,
                CallState.PENDING,
                claimed_by="",
                next_attempt_at=again,
                sip_status=outcome.sip_status,
                call_id=(outcome.call_id or None) and outcome.call_id[:200],
                detail=(
                    f"call {calls} of {1 + self.call_retries}: {outcome.detail}; "
                    f"again in {_duration(self.call_retry_seconds)}"
                )[:200],
            )
            return
        state = {
            "answered": CallState.ANSWERED,
            "busy": CallState.BUSY,
            "no_answer": CallState.NO_ANSWER,
        }.get(outcome.result, CallState.FAILED)
        detail = outcome.detail
        if calls > 1:
            detail = f"call {calls}: {detail}"
        values: dict[str, Any] = {}
        if outcome.digits:
            values["digits"] = outcome.digits[:32]
        await self._finish(
            row,
            state,
            ended_at=now,
            sip_status=outcome.sip_status,
            detail=detail[:200],
            call_id=(outcome.call_id or None) and outcome.call_id[:200],
            talk_seconds=outcome.talk_seconds or None,
            **values,
        )


SKIPPED_FIRST = "acknowledged before the call"
SKIPPED_AGAIN = "acknowledged between calls: not called again"


def _skipped(row: ClaimedCall) -> str:
    return SKIPPED_AGAIN if row.dial_count else SKIPPED_FIRST


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


async def call_counts(session: Any, broadcast_id: int) -> dict[str, int]:
    from sqlalchemy import func

    counts: dict[str, int] = {}
    for state, count in await session.execute(
        select(EscalationCall.state, func.count())
        .where(EscalationCall.broadcast_id == broadcast_id)
        .group_by(EscalationCall.state)
    ):
        counts[CallState(state).value] = int(count)
    return counts


async def cancel_calls(session: Any, broadcast_id: int) -> int:
    """A cancelled broadcast calls nobody more: its pending calls (first or again) are skipped."""
    result = await session.execute(
        update(EscalationCall)
        .where(
            and_(
                EscalationCall.broadcast_id == broadcast_id,
                EscalationCall.state == CallState.PENDING,
            )
        )
        .values(state=CallState.SKIPPED, ended_at=utcnow(), detail="the broadcast was cancelled")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)
