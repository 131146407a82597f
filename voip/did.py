"""The trunk's DID table: which outside number rings what inside.

A DID (direct inward dialling number, the number the carrier routes to us) leads to
an extension, a ring group or an IVR menu. The table is data (``voip_trunk_dids``)
kept in memory like the ring groups: the call path never queries the database,
a periodic reload picks up edits of other nodes and of ``unicomm trunk did``.

:func:`normalise` and :func:`candidates` are the sans-I/O part: carriers write a
DID as the subscriber number (``01088880001``), in E.164 (``+861088880001``) or
with separators, and put it in the Request-URI or, when they send to the trunk
account's registered Contact, only in the To header.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Database

from .features.models import IvrMenuRow, RingGroupRow
from .models import Extension
from .snapshot import SnapshotGuard

log = structlog.get_logger("voip.did")

DID_PATTERN = re.compile(r"^\+?[0-9]{3,20}$")
TARGET_PATTERN = re.compile(r"^[0-9]{2,16}$")
_SEPARATORS = re.compile(r"[\s\-.()]")
MAX_NAME = 200


class DidKind(enum.StrEnum):
    EXTENSION = "extension"
    RING_GROUP = "ring_group"
    IVR = "ivr"


class DidRow(Base):
    """One DID of the carrier trunk and where its calls go."""

    __tablename__ = "voip_trunk_dids"

    did: Mapped[str] = mapped_column(String(24), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(MAX_NAME), default="")


@dataclass(frozen=True)
class Did:
    did: str
    kind: DidKind
    target: str  # an extension, ring group or IVR menu number
    name: str = ""  # what the console shows ("总机 switchboard")


def normalise(text: str) -> str:
    """A DID as stored and looked up: separators gone, a leading + kept."""
    return _SEPARATORS.sub("", text.strip())


def check(did: Did) -> Did:
    """The entry with its DID normalised; ValueError says what is wrong."""
    number = normalise(did.did)
    if not DID_PATTERN.match(number):
        raise ValueError("the DID must be 3 to 20 digits, optionally after a +")
    if not TARGET_PATTERN.match(did.target):
        raise ValueError("the target must be a number of 2 to 16 digits")
    if len(did.name) > MAX_NAME:
        raise ValueError(f"the name has at most {MAX_NAME} characters")
    return Did(number, DidKind(did.kind), did.target, did.name.strip())


def candidates(*dialled: str | None) -> list[str]:
    """The keys to try, in order, for the numbers a carrier's INVITE names."""
    keys: list[str] = []
    for text in dialled:
        if not text:
            continue
        number = normalise(text)
        for key in (number, number.removeprefix("+")):
            if key and key not in keys:
                keys.append(key)
    return keys


class DidTable:
    def __init__(self, db: Database, *, refresh: float = 5.0) -> None:
        self.db = db
        self.refresh = refresh
        self._dids: dict[str, Did] = {}
        self._guard = SnapshotGuard()

    def get(self, did: str) -> Did | None:
        return self._dids.get(normalise(did))

    def lookup(self, dialled: Iterable[str | None]) -> Did | None:
        """The first entry any of the dialled numbers names."""
        for key in candidates(*dialled):
            found = self._dids.get(key)
            if found is not None:
                return found
        return None

    def all(self) -> list[Did]:
        return sorted(self._dids.values(), key=lambda entry: entry.did)

    async def reload(self) -> None:
        # Serialised with save()/remove(): an older read never undoes a newer edit.
        async with self._guard.applying():
            async with self.db.session() as session:
                rows = (await session.scalars(select(DidRow))).all()
            dids = {}
            for row in rows:
                try:
                    dids[row.did] = check(Did(row.did, DidKind(row.kind), row.target, row.name))
                except ValueError as error:
                    log.error("did.invalid", did=row.did, error=str(error))
            self._dids = dids

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("did.reload_failed")

    async def save(self, did: Did) -> Did:
        did = check(did)
        await save_row(self.db, did)
        async with self._guard.applying():
            self._dids[did.did] = did
        return did

    async def remove(self, did: str) -> bool:
        number = normalise(did)
        removed = await remove_row(self.db, number)
        async with self._guard.applying():
            self._dids.pop(number, None)
        return removed


async def save_row(db: Database, did: Did) -> None:
    """Write one entry (checked already); the command line uses this without a server."""
    async with db.session() as session:
        row = await session.get(DidRow, did.did)
        if row is None:
            row = DidRow(did=did.did)
            session.add(row)
        row.kind = did.kind.value
        row.target = did.target
        row.name = did.name


async def remove_row(db: Database, did: str) -> bool:
    async with db.session() as session:
        row = await session.get(DidRow, did)
        if row is None:
            return False
        await session.delete(row)
    return True


async def load_rows(db: Database) -> list[Did]:
    async with db.session() as session:
        rows = (await session.scalars(select(DidRow).order_by(DidRow.did))).all()
    return [Did(row.did, DidKind(row.kind), row.target, row.name) for row in rows]


async def target_exists(session: AsyncSession, kind: DidKind, target: str) -> bool:
    """Whether the extension, ring group or IVR menu a DID would lead to exists now.

    Checked when an entry is saved (console, API, command line); a target removed
    later makes the DID answer 404 until it is pointed elsewhere.
    """
    if kind is DidKind.EXTENSION:
        found = await session.scalar(select(Extension.id).where(Extension.number == target))
        return found is not None
    row_type = RingGroupRow if kind is DidKind.RING_GROUP else IvrMenuRow
    return await session.get(row_type, target) is not None
