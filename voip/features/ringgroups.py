"""Ring groups: one number that rings several extensions, all at once or in order.

:func:`stages` is the sans-I/O part: which members ring together, stage after stage,
busy members left out. :class:`RingGroups` keeps the groups (table
``voip_ring_groups``) in memory and turns stages into forks whose next step is the
next stage.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from core.db import Database
from voip.models import Disposition
from voip.sip.message import Request

from ..accounts import Account, Accounts
from ..location import Location
from ..routing import Forward, Refusal, Route, pseudo_account
from ..snapshot import SnapshotGuard
from ..transport.base import Flow
from .activity import Activity
from .models import RingGroupRow

log = structlog.get_logger("voip.ringgroups")


class Strategy(enum.StrEnum):
    SIMULTANEOUS = "simultaneous"  # every free member at once
    ORDERED = "ordered"  # one after another, ``ring_seconds`` each


@dataclass(frozen=True)
class RingGroup:
    number: str
    name: str
    strategy: Strategy
    members: tuple[str, ...]
    ring_seconds: int = 15


def parse_members(text: str) -> tuple[str, ...]:
    members = tuple(part.strip() for part in text.replace(";", ",").split(",") if part.strip())
    if not members or not all(member.isdigit() for member in members):
        raise ValueError("members: extension numbers separated by commas")
    return members


def stages(group: RingGroup, busy: Callable[[str], bool]) -> list[tuple[str, ...]]:
    """The members ringing together, in turn; a busy member is skipped."""
    free = tuple(member for member in group.members if not busy(member))
    if not free:
        return []
    if group.strategy is Strategy.SIMULTANEOUS:
        return [free]
    return [(member,) for member in free]


class RingGroups:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        location: Location,
        activity: Activity,
        *,
        instance: str,
        refresh: float = 5.0,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.location = location
        self.activity = activity
        self.instance = instance
        self.refresh = refresh
        self._groups: dict[str, RingGroup] = {}
        self._guard = SnapshotGuard()

    def get(self, number: str) -> RingGroup | None:
        return self._groups.get(number)

    def all(self) -> list[RingGroup]:
        return sorted(self._groups.values(), key=lambda group: group.number)

    async def reload(self) -> None:
        # Serialised with save()/remove(): an older read never undoes a newer edit.
        async with self._guard.applying():
            async with self.db.session() as session:
                rows = (await session.scalars(select(RingGroupRow))).all()
            groups = {}
            for row in rows:
                try:
                    groups[row.number] = _group(row)
                except ValueError as error:
                    log.error("ringgroups.invalid", number=row.number, error=str(error))
            self._groups = groups

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("ringgroups.reload_failed")

    async def save(self, group: RingGroup) -> None:
        async with self.db.session() as session:
            row = await session.get(RingGroupRow, group.number)
            if row is None:
                row = RingGroupRow(number=group.number)
                session.add(row)
            row.name = group.name
            row.strategy = group.strategy.value
            row.members = ",".join(group.members)
            row.ring_seconds = group.ring_seconds
        async with self._guard.applying():
            self._groups[group.number] = group

    async def remove(self, number: str) -> bool:
        async with self.db.session() as session:
            row = await session.get(RingGroupRow, number)
            if row is None:
                return False
            await session.delete(row)
        async with self._guard.applying():
            self._groups.pop(number, None)
        return True

    # -- routing -----------------------------------------------------------------------------

    async def route(self, group: RingGroup, caller: Account, request: Request) -> Route:
        plan = stages(group, self.activity.talking)
        log.info("ringgroups.call", group=group.number, caller=caller.number, stages=plan)
        return await self._stage(group, list(plan), caller)

    async def _stage(
        self, group: RingGroup, remaining: list[tuple[str, ...]], caller: Account
    ) -> Route:
        while remaining:
            members = [m for m in remaining.pop(0) if m != caller.number]
            targets = await self._targets(members)
            if not targets:
                continue  # nobody of this stage is registered: the next stage at once
            callee = await self._callee(group, members)
            return Forward(
                callee=callee,
                targets=targets,
                ring_seconds=float(group.ring_seconds),
                next_step=self._next(group, remaining, caller),
            )
        return Refusal(480, Disposition.UNAVAILABLE, "Temporarily Unavailable (ring group)")

    def _next(
        self, group: RingGroup, remaining: list[tuple[str, ...]], caller: Account
    ) -> Callable[[int], Awaitable[Route]]:
        async def next_step(status: int) -> Route:
            return await self._stage(group, remaining, caller)

        return next_step

    async def _targets(self, members: Iterable[str]) -> list[tuple[str, Flow]]:
        targets: list[tuple[str, Flow]] = []
        for member in members:
            for contact in await self.location.lookup(member):
                if (flow := contact.flow(self.instance)) is not None:
                    targets.append((contact.uri, flow))
        return targets

    async def _callee(self, group: RingGroup, members: list[str]) -> Account:
        if len(members) == 1 and (account := await self.accounts.get(members[0])) is not None:
            return account
        return pseudo_account(group.number, group.name)


def _group(row: RingGroupRow) -> RingGroup:
    return RingGroup(
        number=row.number,
        name=row.name,
        strategy=Strategy(row.strategy),
        members=parse_members(row.members),
        ring_seconds=row.ring_seconds,
    )
