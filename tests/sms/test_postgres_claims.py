"""PostgreSQL: two engines claim the same broadcast with SKIP LOCKED, and nobody is texted twice."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest
from sqlalchemy import func, select

from sms import service
from sms.engine import DeliveryEngine
from sms.models import Recipient
from sms.providers import make_provider
from sms.states import FINAL
from sms.testing.twilio_server import read_log

pytestmark = pytest.mark.postgres


async def test_two_engines_share_a_broadcast_on_postgres(sms_stack_postgres: Any) -> None:
    stack = await sms_stack_postgres()
    if True:  # one node of the stack plus a second engine
        await stack.contacts(300)
        ctx = stack.ctx
        # Few requests in flight per node, so the broadcast outlasts the second one's poll.
        ctx.settings.sms_max_in_flight = 4
        second = DeliveryEngine(
            ctx.db,
            make_provider(ctx.settings),
            ctx.settings,
            ctx.state,
            stack.base_url,
            node="second",
        )
        task = asyncio.get_running_loop().create_task(second.run())
        async with ctx.db.session() as session:
            contacts = await service.resolve_audience(session, departments=["EMERG"])
            broadcast = await service.create_broadcast(
                session, body="two nodes", created_by="t", contacts=contacts, approval_threshold=0
            )

        async def finished() -> bool:
            async with ctx.db.session() as session:
                states = list(
                    await session.scalars(
                        select(Recipient.state).where(Recipient.broadcast_id == broadcast.id)
                    )
                )
            return all(state in FINAL for state in states)

        await stack.wait_for(finished, within=60, what="all final")
        assert not task.done(), task.exception()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await second.provider.close()
        log = read_log(stack.twilio.config.log_path)
        assert set(collections.Counter(r["to"] for r in log).values()) == {1}
        assert len(log) == 300
        assert second.sent_count > 0  # the second node really took a share
        async with ctx.db.session() as session:
            assert await session.scalar(select(func.max(Recipient.attempts))) == 1
