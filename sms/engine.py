"""The delivery engine: claims queued recipients, hands them to the provider, records results.

Durability rules (the alert is never lost and never sent twice):

- a row is claimed (``queued -> sending``, ``attempts + 1``) and committed *before* the
  provider is called, so a crash leaves evidence of every attempt;
- a row left in ``sending`` longer than ``sms_in_doubt_seconds`` (the process died, or
  the provider's answer was lost) is reconciled with the provider's own record, and
  resent only when the provider has no trace of it;
- every state change is a guarded UPDATE (``WHERE state IN sources_of(target)``), so
  late or duplicated callbacks never move a row backwards.

Claiming uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of nodes work the
same broadcast; SQLite serialises writers anyway, and one claimer per process suffices.
Results and callbacks are written in group commits: each waiter gets its answer once
the transaction holding its change has committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import TextClause, bindparam, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.config import Settings
from core.db import Database, utcnow
from core.state import SharedState
from sms.models import Broadcast, BroadcastStatus, Recipient
from sms.providers import (
    InDoubtError,
    Outgoing,
    PermanentProviderError,
    Provider,
    ProviderRecord,
    TemporaryProviderError,
)
from sms.states import RANK, DeliveryState, sources_of

log = structlog.get_logger("sms.engine")

RECIPIENTS = Recipient.__table__
CLAIM_BATCH = 200
IDLE_POLL_SECONDS = 0.5
SWEEP_SECONDS = 1.0


def aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Claimed:
    recipient_id: int
    broadcast_id: int
    mobile: str
    attempts: int


class RateLimiter:
    """At most ``rate`` sends per second per key, counted in shared state (so cluster-wide)."""

    def __init__(self, state: SharedState, limits: list[tuple[str, float]]) -> None:
        self.state = state
        self.limits = [(key, rate) for key, rate in limits if rate > 0]

    async def acquire(self) -> None:
        for key, rate in self.limits:
            window = max(1.0, 1.0 / rate)
            allowed = max(1, round(rate * window))
            while True:
                now = time.time()
                slot = int(now // window)
                count = await self.state.incr(f"sms:rate:{key}:{slot}", ttl=window * 2)
                if count <= allowed:
                    break
                await asyncio.sleep((slot + 1) * window - now + random.uniform(0, 0.01))


@dataclass
class _Change:
    recipient_id: int
    target: DeliveryState
    values: dict[str, Any]
    guard_run: str | None  # only if the row is still claimed by this run
    done: asyncio.Future[bool]


class HeldConnection:
    """One connection kept across transactions: no pool checkout (and pre-ping) per commit.

    Dropped on any error, so the next transaction starts on a fresh connection.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: AsyncConnection | None = None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self.db.engine.connect()
        conn = self._conn
        try:
            async with conn.begin():
                yield conn
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                log.warning("sms.connection_close_failed", exc_info=True)


class ChangeWriter:
    """Group commit of recipient state changes: batched guarded UPDATEs, one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.connection = HeldConnection(db)
        self._pending: list[_Change] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sms.writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for change in self._pending:
            if not change.done.done():
                change.done.cancel()
        await self.connection.close()

    async def change(
        self, recipient_id: int, target: DeliveryState, guard_run: str | None = None, **values: Any
    ) -> bool:
        """Apply ``target`` if allowed; True once committed, False when the guard refused."""
        if self._task is None:
            return await self._write_now([recipient_id], target, guard_run, values)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Change(recipient_id, target, values, guard_run, done))
        self._wake.set()
        return await done

    async def _write_now(
        self, ids: list[int], target: DeliveryState, guard_run: str | None, values: dict[str, Any]
    ) -> bool:
        async with self.db.engine.begin() as conn:
            changed = await _apply(
                conn,
                [
                    _Change(
                        ids[0],
                        target,
                        values,
                        guard_run,
                        asyncio.get_running_loop().create_future(),
                    )
                ],
            )
        return changed[0]

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                async with self.connection.begin() as conn:
                    results = await _apply(conn, batch)
            except Exception as exc:
                log.exception("sms.writer_failed", changes=len(batch))
                for change in batch:
                    if not change.done.done():
                        change.done.set_exception(exc)
                continue
            for change, result in zip(batch, results, strict=True):
                if not change.done.done():
                    change.done.set_result(result)


# Rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits.
APPLY_CHUNK = 500


async def _apply(conn: AsyncConnection, batch: list[_Change]) -> list[bool]:
    """Apply a batch of changes in one transaction, one statement per kind of change.

    Changes with the same target, guard and columns become one
    ``UPDATE ... FROM <rows> WHERE id = v.id AND <guard> RETURNING id`` (rows from arrays
    through ``unnest`` on PostgreSQL, from one JSON parameter through ``json_each`` on
    SQLite), so a fixed statement whatever the batch size. The outcome is that of applying
    the changes one by one in :func:`_schedule`'s order: every change in a batch was
    pending at the same time and none had been answered, so any serial order is honest.
    """
    results: list[bool] = [False] * len(batch)
    now = utcnow()
    for (target, guard_run, names), indexes in _schedule(batch):
        for start in range(0, len(indexes), APPLY_CHUNK):
            chunk = indexes[start : start + APPLY_CHUNK]
            changed = await _apply_kind(conn, batch, chunk, target, guard_run, names, now)
            for index in chunk:
                results[index] = batch[index].recipient_id in changed
    return results


_Kind = tuple[DeliveryState, str | None, tuple[str, ...]]


def _schedule(batch: list[_Change]) -> list[tuple[_Kind, list[int]]]:
    """The serial order in which a batch is applied: kinds of change, each naming a row once.

    Rounds: a row named twice by one kind waits for the next round. Within a round, kinds
    go in rank order (stable), so a ``sent`` lands before a ``delivered`` of the same batch.
    """
    todo = sorted(range(len(batch)), key=lambda i: RANK[batch[i].target])
    plan: list[tuple[_Kind, list[int]]] = []
    while todo:
        groups: dict[_Kind, dict[int, int]] = {}
        later: list[int] = []
        for index in todo:
            change = batch[index]
            kind = (change.target, change.guard_run, tuple(sorted(change.values)))
            group = groups.setdefault(kind, {})
            if change.recipient_id in group:
                later.append(index)
            else:
                group[change.recipient_id] = index
        for kind, members in sorted(groups.items(), key=lambda item: RANK[item[0][0]]):
            plan.append((kind, list(members.values())))
        todo = later
    return plan


async def _apply_kind(
    conn: AsyncConnection,
    batch: list[_Change],
    chunk: list[int],
    target: DeliveryState,
    guard_run: str | None,
    names: tuple[str, ...],
    now: dt.datetime,
) -> set[int]:
    if len(chunk) == 1:
        # One row: a plain UPDATE, whose compiled form is cached.
        change = batch[chunk[0]]
        single = (
            update(RECIPIENTS)
            .where(
                RECIPIENTS.c.id == change.recipient_id,
                RECIPIENTS.c.state.in_(sources_of(target)),
            )
            .values(state=target, updated_at=now, **change.values)
            .returning(RECIPIENTS.c.id)
        )
        if guard_run is not None:
            single = single.where(RECIPIENTS.c.claimed_by == guard_run)
        return set((await conn.execute(single)).scalars())
    dialect = conn.dialect
    statement = _batch_statement(dialect.name, names, guard_run is not None)
    ids = [batch[i].recipient_id for i in chunk]
    columns = [[batch[i].values[name] for i in chunk] for name in names]
    params: dict[str, Any] = {
        "target": target,
        "now": now,
        "sources": sorted(sources_of(target)),
        "guard": guard_run,
    }
    if dialect.name == "postgresql":
        # Arrays: one prepared statement whatever the batch size.
        params["ids"] = ids
        for n, values_of in enumerate(columns):
            params[f"c{n}"] = values_of
    else:
        # SQLite: the rows travel as one JSON array, unpacked by json_each.
        processors = [_sqlite_processor(dialect, name) for name in names]
        rows = [
            [recipient_id, *(p(v) if p else v for p, v in zip(processors, row, strict=True))]
            for recipient_id, *row in zip(ids, *columns, strict=True)
        ]
        params["rows"] = json.dumps(rows, ensure_ascii=False)
    if guard_run is None:
        del params["guard"]
    return set((await conn.execute(statement, params)).scalars())


def _sqlite_processor(dialect: Any, name: str) -> Any:
    return RECIPIENTS.c[name].type.dialect_impl(dialect).bind_processor(dialect)


@functools.cache
def _batch_statement(backend: str, names: tuple[str, ...], guarded: bool) -> TextClause:
    """``UPDATE ... FROM <rows> WHERE id matches AND state IN sources [AND claimed_by]``."""
    sets = ", ".join(f"{name} = v.{name}" for name in names)
    sets = "state = :target, updated_at = :now" + (f", {sets}" if sets else "")
    guard = " AND r.claimed_by = :guard" if guarded else ""
    if backend == "postgresql":
        casts = [_PG_ARRAY[type(RECIPIENTS.c[name].type).__name__] for name in names]
        arrays = ", ".join(
            ["CAST(:ids AS INTEGER[])"] + [f"CAST(:c{n} AS {cast})" for n, cast in enumerate(casts)]
        )
        source = f"unnest({arrays}) AS v(id{''.join(', ' + n for n in names)})"
        # "r.id = ANY(ids)" lets the planner fetch the rows by primary key; on the join
        # alone it hashes a sequential scan of the whole table (every broadcast ever sent).
        sql = (
            f"UPDATE sms_recipients AS r SET {sets} FROM {source} "
            f"WHERE r.id = v.id AND r.id = ANY(CAST(:ids AS INTEGER[])) "
            f"AND r.state IN :sources{guard} RETURNING r.id"
        )
    else:
        picks = ", ".join(
            ["json_extract(value, '$[0]') AS id"]
            + [f"json_extract(value, '$[{n + 1}]') AS {name}" for n, name in enumerate(names)]
        )
        # MATERIALIZED and the unary + on state keep SQLite's planner on "each row of v,
        # then its primary key": left alone it may scan r by its state index and run
        # json_each once per row (seconds instead of a millisecond for 500 rows).
        sql = (
            f"WITH v AS MATERIALIZED (SELECT {picks} FROM json_each(:rows)) "
            f"UPDATE sms_recipients AS r SET {sets} FROM v "
            f"WHERE r.id = v.id AND +r.state IN :sources{guard} RETURNING id"
        )
    return text(sql).bindparams(
        bindparam("target", type_=RECIPIENTS.c.state.type),
        bindparam("now", type_=RECIPIENTS.c.updated_at.type),
        bindparam("sources", expanding=True, type_=RECIPIENTS.c.state.type),
    )


_PG_ARRAY = {"String": "VARCHAR[]", "Text": "TEXT[]", "Integer": "INTEGER[]"}
_PG_ARRAY["DateTime"] = "TIMESTAMP WITH TIME ZONE[]"


class DeliveryEngine:
    def __init__(
        self,
        db: Database,
        provider: Provider,
        settings: Settings,
        state: SharedState,
        callback_base: str,
        node: str = "",
    ) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings
        self.callback_base = callback_base
        self.run_id = f"{node or 'node'}-{uuid.uuid4().hex[:10]}"[:64]
        self.writer = ChangeWriter(db)
        self.claims = HeldConnection(db)
        self.limiter = RateLimiter(
            state,
            [
                ("global", settings.sms_rate_per_second),
                (
                    f"sender:{settings.twilio_from or provider.name}",
                    settings.sms_sender_rate_per_second,
                ),
            ],
        )
        self.wake = asyncio.Event()
        self._bodies: dict[int, str] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        # Results answered by the provider and waiting for their group commit. They do
        # not hold a send slot (the attempt was committed before the call; a crash before
        # the result's commit leaves the row "sending", reconciled with the provider),
        # so a slow commit (fsync on a busy disk) does not stall sending: up to
        # ``sms_max_in_flight`` of them wait freely, more take slots back.
        self._recording: set[asyncio.Task[None]] = set()
        self._skip_locked = db.backend == "postgresql"
        self.sent_count = 0

    # ------------------------------------------------------------ main loop

    async def run(self) -> None:
        self.writer.start()
        try:
            last_sweep = 0.0
            while True:
                limit = self.settings.sms_max_in_flight
                # Refill in batches: claiming one row per finished send costs a transaction
                # per message; claiming at half-empty costs one per many.
                refill = min(CLAIM_BATCH, max(1, limit // 2))
                free = limit - self._busy(limit)
                claimed: list[Claimed] = []
                if free >= refill or (free > 0 and not self._in_flight):
                    claimed = await self.claim(min(free, CLAIM_BATCH))
                    for row in claimed:
                        self._spawn(self.deliver(row))
                if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    await self.sweep()
                if self._short(limit, refill):
                    while self._short(limit, refill):
                        await asyncio.wait(
                            self._in_flight | self._recording,
                            timeout=max(0.0, SWEEP_SECONDS - (time.monotonic() - last_sweep)),
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                        if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                            break
                elif not claimed:
                    self.wake.clear()
                    waiters: list[Any] = [asyncio.ensure_future(self.wake.wait())]
                    try:
                        await asyncio.wait(waiters, timeout=IDLE_POLL_SECONDS)
                    finally:
                        for waiter in waiters:
                            waiter.cancel()
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            if self._recording:  # answered sends: let their results commit, briefly
                await asyncio.wait(self._recording, timeout=5.0)
            for task in list(self._recording):
                task.cancel()
            await asyncio.gather(*self._recording, return_exceptions=True)
            await self.writer.stop()
            await self.claims.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _busy(self, limit: int) -> int:
        """Send slots taken: sends in flight, and results past ``limit`` awaiting commit."""
        return len(self._in_flight) + max(0, len(self._recording) - limit)

    def _short(self, limit: int, refill: int) -> bool:
        """Too few free slots for a claim, and work under way that will free some."""
        working = bool(self._in_flight or self._recording)
        return working and limit - self._busy(limit) < refill

    async def claim(self, limit: int) -> list[Claimed]:
        """Mark up to ``limit`` due rows as ``sending`` by this run, committed."""
        now = utcnow()
        due = (
            select(Recipient.id)
            .join(Broadcast, Broadcast.id == Recipient.broadcast_id)
            .where(
                Recipient.state == DeliveryState.QUEUED,
                Recipient.next_attempt_at <= now,
                Broadcast.status.in_([BroadcastStatus.SENDING, BroadcastStatus.SCHEDULED]),
                Broadcast.send_at <= now,
            )
            # The order of ix_sms_recipients_work (state, next_attempt_at): PostgreSQL walks
            # the index and stops at the limit, where a tie-break on id would sort every
            # queued row of every broadcast at each claim.
            .order_by(Recipient.next_attempt_at)
            .limit(limit)
        )
        if self._skip_locked:
            due = due.with_for_update(of=Recipient, skip_locked=True)
        # A CTE is evaluated once; "id IN (subquery LIMIT n FOR UPDATE SKIP LOCKED)" may be
        # re-run per row by PostgreSQL and claim far more than n.
        chosen = due.cte("due")
        query = (
            update(RECIPIENTS)
            .where(RECIPIENTS.c.id == chosen.c.id, RECIPIENTS.c.state == DeliveryState.QUEUED)
            .values(
                state=DeliveryState.SENDING,
                attempts=RECIPIENTS.c.attempts + 1,
                attempt_started_at=now,
                claimed_by=self.run_id,
                updated_at=now,
            )
            .returning(
                RECIPIENTS.c.id,
                RECIPIENTS.c.broadcast_id,
                RECIPIENTS.c.mobile,
                RECIPIENTS.c.attempts,
            )
        )
        async with self.claims.begin() as conn:
            rows = (await conn.execute(query)).all()
        return [Claimed(r.id, r.broadcast_id, r.mobile, r.attempts) for r in rows]

    async def body_of(self, broadcast_id: int) -> str:
        body = self._bodies.get(broadcast_id)
        if body is None:
            async with self.db.session() as session:
                body = str(
                    await session.scalar(select(Broadcast.body).where(Broadcast.id == broadcast_id))
                )
            self._bodies[broadcast_id] = body
        return body

    def status_callback(self, recipient_id: int) -> str | None:
        if not self.provider.calls_back:
            return None
        # Our row id rides in the URL: a callback that beats our own commit of the SID
        # still finds its row.
        return f"{self.callback_base}/api/sms/twilio/status?r={recipient_id}"

    async def deliver(self, row: Claimed) -> None:
        message = Outgoing(
            row.recipient_id,
            row.mobile,
            await self.body_of(row.broadcast_id),
            self.status_callback(row.recipient_id),
        )
        await self.limiter.acquire()
        try:
            record = await self.provider.send(message)
        except TemporaryProviderError as exc:
            if row.attempts >= self.settings.sms_max_attempts:
                await self.writer.change(
                    row.recipient_id,
                    DeliveryState.FAILED,
                    self.run_id,
                    error=f"gave up after {row.attempts} attempts: {exc}"[:200],
                )
                return
            delay = self.settings.sms_retry_base_seconds * 2 ** (row.attempts - 1)
            delay *= random.uniform(0.8, 1.2)  # spread retries so they do not return as a wave
            await self.writer.change(
                row.recipient_id,
                DeliveryState.QUEUED,
                self.run_id,
                claimed_by="",
                next_attempt_at=utcnow() + dt.timedelta(seconds=delay),
                error=str(exc)[:200],
            )
            return
        except PermanentProviderError as exc:
            await self.writer.change(
                row.recipient_id, DeliveryState.FAILED, self.run_id, error=str(exc)[:200]
            )
            return
        except InDoubtError as exc:
            log.warning("sms.send_in_doubt", recipient=row.recipient_id, error=str(exc))
            return  # left in "sending": the sweep reconciles it after sms_in_doubt_seconds
        except Exception:
            log.exception("sms.send_crashed", recipient=row.recipient_id)
            return
        self.sent_count += 1
        task = asyncio.ensure_future(self._record_answer(row.recipient_id, record))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record_answer(self, recipient_id: int, record: ProviderRecord) -> None:
        try:
            await self.record(recipient_id, record)
        except Exception:
            # Left "sending": the sweep reconciles it with the provider's own record.
            log.exception("sms.record_failed", recipient=recipient_id, sid=record.sid)

    async def record(self, recipient_id: int, record: ProviderRecord) -> None:
        changed = await self.writer.change(
            recipient_id, record.state, None, provider_sid=record.sid, error=record.error[:200]
        )
        if not changed:
            # A callback already moved it further; keep its state, but remember the SID.
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(RECIPIENTS)
                    .where(RECIPIENTS.c.id == recipient_id, RECIPIENTS.c.provider_sid.is_(None))
                    .values(provider_sid=record.sid)
                )

    # ------------------------------------------------------------ sweep

    async def sweep(self) -> None:
        try:
            await self._advance_broadcasts()
            await self._reconcile_in_doubt()
            await self._poll_silent()
        except Exception:
            log.exception("sms.sweep_failed")

    async def _advance_broadcasts(self) -> None:
        now = utcnow()
        pending = exists().where(
            Recipient.broadcast_id == Broadcast.id,
            Recipient.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]),
        )
        async with self.db.session() as session:
            await session.execute(
                update(Broadcast)
                .where(Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.send_at <= now)
                .values(status=BroadcastStatus.SENDING)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Broadcast)
                .where(Broadcast.status == BroadcastStatus.SENDING, ~pending)
                .values(status=BroadcastStatus.COMPLETED, completed_at=now)
                .execution_options(synchronize_session=False)
            )

    async def _reconcile_in_doubt(self) -> None:
        cutoff = utcnow() - dt.timedelta(seconds=self.settings.sms_in_doubt_seconds)
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(
                        Recipient.id,
                        Recipient.broadcast_id,
                        Recipient.mobile,
                        Recipient.attempts,
                        Recipient.attempt_started_at,
                    )
                    .where(
                        Recipient.state == DeliveryState.SENDING,
                        Recipient.attempt_started_at < cutoff,
                    )
                    .order_by(Recipient.id)
                    .limit(CLAIM_BATCH)
                )
            ).all()
        if not rows:
            return
        semaphore = asyncio.Semaphore(16)

        async def one(row: Any) -> None:
            async with semaphore:
                await self.reconcile(
                    Claimed(row.id, row.broadcast_id, row.mobile, row.attempts),
                    aware(row.attempt_started_at),
                )

        await asyncio.gather(*(one(row) for row in rows))

    async def reconcile(self, row: Claimed, started: dt.datetime) -> None:
        """Ask the provider whether an attempt in doubt reached it; resend only if not."""
        now = utcnow()
        # Take the row over first (guarded by its attempt), so two nodes never both decide.
        async with self.db.engine.begin() as conn:
            taken = await conn.execute(
                update(RECIPIENTS)
                .where(
                    RECIPIENTS.c.id == row.recipient_id,
                    RECIPIENTS.c.state == DeliveryState.SENDING,
                    RECIPIENTS.c.attempts == row.attempts,
                    RECIPIENTS.c.attempt_started_at == started,
                )
                .values(claimed_by=self.run_id, attempt_started_at=now, updated_at=now)
            )
        if not taken.rowcount:
            return
        try:
            record = await self.provider.find(
                row.mobile, await self.body_of(row.broadcast_id), started
            )
        except Exception as exc:
            log.warning("sms.reconcile_unanswered", recipient=row.recipient_id, error=str(exc))
            return  # still "sending"; asked again after sms_in_doubt_seconds
        if record is not None:
            log.info("sms.reconciled_found", recipient=row.recipient_id, sid=record.sid)
            await self.record(row.recipient_id, record)
        else:
            log.info("sms.reconciled_absent", recipient=row.recipient_id)
            await self.writer.change(
                row.recipient_id,
                DeliveryState.QUEUED,
                self.run_id,
                claimed_by="",
                next_attempt_at=utcnow(),
            )
            self.wake.set()

    async def _poll_silent(self) -> None:
        """Fetch the status of messages whose delivery report never came (lost callbacks)."""
        if not self.provider.calls_back:
            return
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=self.settings.sms_status_poll_seconds)
        async with self.db.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(RECIPIENTS.c.id, RECIPIENTS.c.provider_sid)
                    .where(
                        RECIPIENTS.c.state == DeliveryState.SENT,
                        RECIPIENTS.c.updated_at < cutoff,
                        RECIPIENTS.c.provider_sid.is_not(None),
                    )
                    .order_by(RECIPIENTS.c.updated_at)
                    .limit(CLAIM_BATCH)
                )
            ).all()
            if rows:
                # Touch them so the next sweep does not ask again at once.
                await conn.execute(
                    update(RECIPIENTS)
                    .where(
                        RECIPIENTS.c.id.in_([r.id for r in rows]),
                        RECIPIENTS.c.state == DeliveryState.SENT,
                    )
                    .values(updated_at=now)
                )
        semaphore = asyncio.Semaphore(16)

        async def one(recipient_id: int, sid: str) -> None:
            async with semaphore:
                try:
                    record = await self.provider.fetch(sid)
                except Exception as exc:
                    log.warning("sms.poll_failed", sid=sid, error=str(exc))
                    return
                if record is not None and record.state is not DeliveryState.SENT:
                    await self.writer.change(
                        recipient_id, record.state, None, error=record.error[:200]
                    )

        await asyncio.gather(*(one(r.id, r.provider_sid) for r in rows))


async def apply_provider_status(
    writer: ChangeWriter, recipient_id: int, sid: str, status: DeliveryState, error: str
) -> bool:
    """A status callback: moves the row forward only; older news is ignored."""
    return await writer.change(recipient_id, status, None, provider_sid=sid, error=error[:200])
