"""The dial plan and department policies in memory, reloaded from the database.

Like the account snapshot, the call path never queries the database: the rules
and policies are read at start and every few seconds (two small queries), so an
edit in the console applies within ``refresh`` seconds on every node.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from core.db import Database
from voip.models import ClassOfService, DepartmentPolicy, DialRule

from .dialplan import DialPlan
from .snapshot import SnapshotGuard

log = structlog.get_logger("voip.plan")


@dataclass(frozen=True, slots=True)
class Policy:
    class_of_service: ClassOfService | None
    caller_id: str


class PlanStore:
    def __init__(self, db: Database, *, refresh: float = 5.0) -> None:
        self._db = db
        self.refresh = refresh
        self.plan = DialPlan.default()
        self.policies: dict[int, Policy] = {}
        self._guard = SnapshotGuard()

    async def reload(self) -> None:
        # Serialised, so an older read is never applied over a newer one (voip.snapshot).
        async with self._guard.applying():
            async with self._db.session() as session:
                rules = (await session.scalars(select(DialRule))).all()
                policies = (await session.scalars(select(DepartmentPolicy))).all()
            try:
                plan = DialPlan.from_rules((r.kind, r.pattern, r.target) for r in rules)
            except ValueError as error:
                # A bad row must not take routing down: keep the last good plan, say why.
                log.error("plan.invalid_rule", error=str(error))
                return
            if rules:
                self.plan = plan
            self.policies = {
                p.department_id: Policy(p.class_of_service, p.caller_id) for p in policies
            }

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("plan.reload_failed")

    def policy(self, department_id: int | None) -> Policy | None:
        return self.policies.get(department_id) if department_id is not None else None
