"""The in-memory snapshots never go back in time (the flaky trunk test's root cause).

A periodic reload whose read began before an edit was committed used to be applied
after the reload that followed the edit, so the exchange kept the old class of
service (or forwarding, or ring group) until the next period. These tests hold such
a reload between its read and its swap, make the edit, and check the newer state wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.context import AppContext
from core.db import Database
from core.models import Department
from voip import service
from voip.accounts import Accounts
from voip.features.ringgroups import RingGroup, RingGroups, Strategy
from voip.features.settings import FeatureStore
from voip.models import ClassOfService, Extension


class HeldDatabase:
    """A Database whose next session, once armed, waits at its end until released.

    That is where a real reload is caught under load: its rows are read (the old
    ones), and the commit that ends the read transaction has yet to come back.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.armed = False
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        hold, self.armed = self.armed, False
        async with self.db.session() as session:
            yield session
            if hold:
                self.read.set()
                await self.release.wait()


async def add(ctx: AppContext, number: str) -> None:
    async with ctx.db.session() as session:
        if await session.get(Department, 1) is None:
            session.add(Department(code="IT", name="IT"))
            await session.flush()
        await service.add_extension(
            session,
            number=number,
            name=f"Phone {number}",
            password="secret-pw-123",
            realm=ctx.settings.sip_realm,
            department_code="IT",
        )


async def race(held: HeldDatabase, stale: Any, edit: Any) -> None:
    """Run ``stale`` (a reload) until it has read, then ``edit``, then let ``stale`` finish."""
    held.armed = True
    stale_task = asyncio.create_task(stale())
    await asyncio.wait_for(held.read.wait(), 5)
    edit_task = asyncio.create_task(edit())
    # Give the edit every chance to finish first, as it did under load. Fixed, it waits
    # for the held reload instead, so this wait runs out: it bounds the test, it does
    # not hide a race.
    await asyncio.wait({edit_task}, timeout=0.5)
    held.release.set()
    await asyncio.wait_for(asyncio.gather(stale_task, edit_task), 5)


async def test_a_reload_that_read_before_an_edit_never_overwrites_it(
    app_context: AppContext,
) -> None:
    await add(app_context, "1002")
    held = HeldDatabase(app_context.db)
    accounts = Accounts(held)  # type: ignore[arg-type]
    await accounts.reload()
    assert (await accounts.get("1002")).class_of_service is ClassOfService.INTERNAL  # type: ignore[union-attr]

    async def edit() -> None:
        async with app_context.db.session() as session:
            await session.execute(
                update(Extension)
                .where(Extension.number == "1002")
                .values(class_of_service=ClassOfService.NATIONAL)
            )
        await accounts.reload()

    await race(held, accounts.reload, edit)
    account = accounts.cached("1002")
    assert account is not None and account.class_of_service is ClassOfService.NATIONAL


async def test_a_lookup_older_than_a_reload_is_not_cached(app_context: AppContext) -> None:
    await add(app_context, "1002")
    held = HeldDatabase(app_context.db)
    accounts = Accounts(held)  # type: ignore[arg-type]  # nothing loaded: get() queries

    async def edit() -> None:
        async with app_context.db.session() as session:
            await session.execute(
                update(Extension)
                .where(Extension.number == "1002")
                .values(class_of_service=ClassOfService.NATIONAL)
            )
        await accounts.reload()

    # The lookup read the extension as it was before the edit and its reload.
    await race(held, lambda: accounts.get("1002"), edit)
    account = await accounts.get("1002")
    assert account is not None and account.class_of_service is ClassOfService.NATIONAL


async def test_a_feature_reload_never_undoes_a_newer_change(app_context: AppContext) -> None:
    await add(app_context, "1001")
    held = HeldDatabase(app_context.db)
    store = FeatureStore(held)  # type: ignore[arg-type]
    await store.reload()

    async def edit() -> None:
        await store.update("1001", dnd=True)

    await race(held, store.reload, edit)
    assert store.get("1001").dnd


async def test_a_ring_group_reload_never_undoes_a_newer_save(app_context: AppContext) -> None:
    held = HeldDatabase(app_context.db)
    groups = RingGroups(held, None, None, None, instance="test")  # type: ignore[arg-type]
    await groups.reload()
    group = RingGroup("600", "Desk", Strategy.ORDERED, ("1001", "1002"), 15)

    async def edit() -> None:
        await groups.save(group)

    await race(held, groups.reload, edit)
    assert groups.get("600") == group
