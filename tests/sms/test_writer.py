"""The group-commit writer: batched UPDATEs decide exactly as one guarded UPDATE per change."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from sqlalchemy import insert, select

from core import migrations
from core.db import Database, utcnow
from sms.engine import RECIPIENTS, ChangeWriter, _apply, _Change, _schedule
from sms.models import Broadcast, BroadcastStatus
from sms.states import DeliveryState, can_move

S = DeliveryState


async def _fresh(db: Database, count: int) -> None:
    now = utcnow()
    async with db.session() as session:
        broadcast = Broadcast(
            body="b",
            created_by="t",
            send_at=now,
            status=BroadcastStatus.COMPLETED,
            encoding="GSM-7",
            segments=1,
        )
        session.add(broadcast)
        await session.flush()
        await session.execute(
            insert(RECIPIENTS),
            [
                {
                    "id": i,
                    "broadcast_id": broadcast.id,
                    "name": f"p{i}",
                    "mobile": f"+86138{i:08d}",
                    "state": S.SENDING if i % 3 else S.SENT,
                    "attempts": 1,
                    "next_attempt_at": now,
                    "claimed_by": "run-a" if i % 2 else "run-b",
                    "error": "",
                }
                for i in range(1, count + 1)
            ],
        )


def _changes(count: int, seed: int) -> list[_Change]:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    targets = [S.QUEUED, S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.ACKNOWLEDGED]
    changes = []
    for _ in range(count * 3):  # rows named several times, some by the same kind of change
        target = rng.choice(targets)
        rid = rng.randint(1, count)
        values: dict[str, object] = {"error": f"e{rng.randint(0, 9)}"}
        guard = None
        if target in (S.QUEUED, S.FAILED):
            guard = rng.choice(["run-a", "run-b"])
        if target is S.QUEUED:
            values.update(claimed_by="", next_attempt_at=utcnow() + dt.timedelta(seconds=5))
        else:
            values["provider_sid"] = f"SM{rid}"
        changes.append(_Change(rid, target, values, guard, loop.create_future()))
    return changes


async def test_batched_apply_matches_one_guarded_update_per_change(database_url: str) -> None:
    await migrations.upgrade_async(database_url)
    db = Database(database_url)
    try:
        await _fresh(db, 300)
        changes = _changes(300, seed=11)
        async with db.engine.begin() as conn:
            rows = await conn.execute(select(RECIPIENTS))
            model = {r.id: (S(r.state), r.claimed_by, r.error) for r in rows}
            results = await _apply(conn, changes)
            after = {r.id: r for r in await conn.execute(select(RECIPIENTS))}
        # The same changes applied one at a time, in the writer's declared order.
        expected = [False] * len(changes)
        order = [i for _, indexes in _schedule(changes) for i in indexes]
        assert sorted(order) == list(range(len(changes)))
        for _, indexes in _schedule(changes):
            assert len({changes[i].recipient_id for i in indexes}) == len(indexes)
        for i in order:
            change = changes[i]
            state, owner, _ = model[change.recipient_id]
            if not can_move(state, change.target):
                continue
            if change.guard_run is not None and owner != change.guard_run:
                continue
            expected[i] = True
            model[change.recipient_id] = (
                change.target,
                str(change.values.get("claimed_by", owner)),
                str(change.values["error"]),
            )
        assert results == expected
        assert {rid: (S(r.state), r.claimed_by, r.error) for rid, r in after.items()} == model
        assert 100 < sum(results) < len(changes)  # both outcomes really happened
        for row in after.values():
            if S(row.state) is S.QUEUED:
                assert row.next_attempt_at is not None
            elif S(row.state) is not S.SENDING and row.id % 3:
                assert row.provider_sid in (None, f"SM{row.id}")
    finally:
        await db.close()


async def test_writer_answers_each_waiter_once_committed(database_url: str) -> None:
    await migrations.upgrade_async(database_url)
    db = Database(database_url)
    writer = ChangeWriter(db)
    writer.start()
    try:
        await _fresh(db, 50)
        oks = await asyncio.gather(
            *(
                writer.change(i, S.DELIVERED, None, provider_sid=f"SM{i}", error="")
                for i in range(1, 51)
            ),
            writer.change(1, S.DELIVERED, None, provider_sid="SM1", error=""),  # a repeat
        )
        assert oks == [True] * 50 + [False]
        async with db.session() as session:
            rows = await session.execute(select(RECIPIENTS.c.state, RECIPIENTS.c.provider_sid))
            assert {(S(state), sid[:2]) for state, sid in rows} == {(S.DELIVERED, "SM")}
    finally:
        await writer.stop()
        await db.close()
