"""Per-extension call settings (DND, forwarding, voicemail, pickup, recording) from the database.

The call path reads a snapshot (no query per call), reloaded every few seconds so a
change made on another node applies within ``refresh``; a change made here applies
at once. An extension without a row has the defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select

from core.db import Database
from voip.models import Extension
from voip.snapshot import SnapshotGuard

from .models import CallFeatureRow

log = structlog.get_logger("voip.features")

PIN_ITERATIONS = 60_000
LANGUAGES = ("zh", "en")


@dataclass(frozen=True, slots=True)
class CallFeatures:
    dnd: bool = False
    forward_always: str = ""
    forward_busy: str = ""
    forward_no_answer: str = ""
    no_answer_seconds: int = 20
    voicemail: bool = True
    voicemail_pin_hash: str = ""
    language: str = "zh"
    # Whose ringing calls ``*8`` may answer: this name, or the department when empty.
    pickup_group: str = ""
    # Every call of the extension is recorded (see voip.features.recording).
    record_calls: bool = False

    @property
    def changes_routing(self) -> bool:
        """False when a call for the extension simply rings its phones."""
        return (
            self.dnd
            or self.voicemail
            or bool(self.forward_always or self.forward_busy or self.forward_no_answer)
        )

    def public(self) -> dict[str, Any]:
        """What the API and the console show: never the PIN's hash."""
        shown = dataclasses.asdict(self)
        shown.pop("voicemail_pin_hash")
        shown["voicemail_pin_set"] = bool(self.voicemail_pin_hash)
        return shown


def hash_pin(pin: str) -> str:
    salt = secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), PIN_ITERATIONS).hex()
    return f"pbkdf2_sha256${PIN_ITERATIONS}${salt}${digest}"


def pin_matches(pin: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    mine = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), int(iterations)).hex()
    return hmac.compare_digest(mine, digest)


FIELDS = tuple(field.name for field in dataclasses.fields(CallFeatures))


class FeatureStore:
    def __init__(self, db: Database, *, refresh: float = 5.0) -> None:
        self._db = db
        self.refresh = refresh
        self._by_number: dict[str, CallFeatures] = {}
        self._guard = SnapshotGuard()

    def get(self, number: str) -> CallFeatures:
        return self._by_number.get(number) or CallFeatures()

    async def reload(self) -> None:
        # Serialised with update()'s swap: an older read never undoes a newer change.
        async with self._guard.applying():
            async with self._db.session() as session:
                rows = (
                    await session.execute(
                        select(Extension.number, CallFeatureRow).join(
                            CallFeatureRow, CallFeatureRow.extension_id == Extension.id
                        )
                    )
                ).all()
            self._by_number = {
                number: CallFeatures(**{name: getattr(row, name) for name in FIELDS})
                for number, row in rows
            }

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("features.reload_failed")

    async def update(self, number: str, **changes: Any) -> CallFeatures | None:
        """Change some settings of an extension; None when there is no such extension."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown call settings: {sorted(unknown)}")
        async with self._db.session() as session:
            extension_id = await session.scalar(
                select(Extension.id).where(Extension.number == number)
            )
            if extension_id is None:
                return None
            row = await session.get(CallFeatureRow, extension_id)
            if row is None:
                row = CallFeatureRow(
                    extension_id=extension_id, **dataclasses.asdict(CallFeatures())
                )
                session.add(row)
            for name, value in changes.items():
                setattr(row, name, value)
            await session.flush()
            features = CallFeatures(**{name: getattr(row, name) for name in FIELDS})
        async with self._guard.applying():  # after any reload that read before the commit
            self._by_number[number] = features
        log.info("features.changed", number=number, changed=sorted(changes))
        return features
