"""The extensions the SIP core authenticates and routes, cached in memory.

The call path must not query the database per INVITE: the whole directory is
reloaded every few seconds (one query) and a number missing from the snapshot
is looked up once and remembered until the next reload, so an extension added
a moment ago works at once and a scan of unknown numbers costs one query each.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from core.db import Database
from voip.models import ClassOfService, Extension
from voip.snapshot import SnapshotGuard

log = structlog.get_logger("voip.accounts")


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    number: str
    name: str
    department_id: int | None
    ha1_md5: str
    ha1_sha256: str
    enabled: bool
    class_of_service: ClassOfService = ClassOfService.INTERNAL

    def ha1(self, algorithm: str) -> str | None:
        base = algorithm.upper().removesuffix("-SESS")
        if base == "MD5":
            return self.ha1_md5
        if base == "SHA-256":
            return self.ha1_sha256
        return None


def _account(row: Extension) -> Account:
    return Account(
        row.id,
        row.number,
        row.name,
        row.department_id,
        row.ha1_md5,
        row.ha1_sha256,
        row.enabled,
        row.class_of_service,
    )


_COLUMNS = (
    Extension.id,
    Extension.number,
    Extension.name,
    Extension.department_id,
    Extension.ha1_md5,
    Extension.ha1_sha256,
    Extension.enabled,
    Extension.class_of_service,
)  # the fields of Account, in order


class Accounts:
    def __init__(self, db: Database, *, refresh: float = 5.0) -> None:
        self._db = db
        self.refresh = refresh
        self._by_number: dict[str, Account] = {}
        self._missing: set[str] = set()
        self._loaded_at = 0.0
        self._guard = SnapshotGuard()

    async def reload(self) -> None:
        # Serialised: a periodic reload that read before an edit must not be applied
        # after the reload that follows the edit (see voip.snapshot).
        async with self._guard.applying():
            # Plain rows, not ORM objects: with thousands of extensions the ORM load
            # held the event loop for tens of milliseconds every few seconds.
            async with self._db.session() as session:
                rows = (await session.execute(select(*_COLUMNS))).all()
            self._by_number = {row[1]: Account(*row) for row in rows}
            self._missing = set()
            self._loaded_at = time.monotonic()

    async def run(self) -> None:
        """Keep the snapshot fresh (changes in the directory apply within ``refresh``)."""
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("accounts.reload_failed")

    def cached(self, number: str) -> Account | None:
        return self._by_number.get(number)

    async def get(self, number: str) -> Account | None:
        account = self._by_number.get(number)
        if account is not None or number in self._missing:
            return account
        if len(number) > 64:
            return None
        generation = self._guard.generation
        async with self._db.session() as session:
            row = await session.scalar(select(Extension).where(Extension.number == number))
        # A snapshot applied while this query ran may be newer than what it read:
        # answer with the row, but remember it only if nothing was applied meanwhile.
        remember = generation == self._guard.generation
        if row is None:
            if remember and len(self._missing) < 100_000:
                self._missing.add(number)
            return None
        account = _account(row)
        if remember:
            self._by_number[number] = account
        return account

    async def by_id(self, extension_id: int) -> Account | None:
        for account in self._by_number.values():
            if account.id == extension_id:
                return account
        async with self._db.session() as session:
            row = await session.get(Extension, extension_id)
        return None if row is None else _account(row)
