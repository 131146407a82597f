"""Voicemail: messages recorded by the media workers, kept on disk and in the database.

Two media applications run in the workers (:mod:`voip.media_engine`):

- ``voicemail``: a call for an extension that nobody answered (or that was busy, or
  set to do not disturb) is answered with the greeting and a beep, then what the
  caller says is recorded to ``data_dir/voicemail/<mailbox>/`` until they hang up
  (or :data:`MAX_MESSAGE_SECONDS`); the message is filed in ``voip_voicemails`` and
  the owner's phones get a message-waiting NOTIFY;
- ``mailbox``: the owner dials ``*97``, enters the PIN and hash, and hears the
  messages, new first; 7 deletes the one just heard, 9 goes on.

The router tells this service which mailbox a call is for (:meth:`expect`) before
the call reaches a worker; the application finds it by the caller's Call-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import wave
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import delete, func, select, update

from core.db import Database

from ..media_engine import MediaSession, SessionEnded
from .models import VoicemailRow
from .mwi import MwiNotifier
from .prompts import Prompts
from .settings import FeatureStore, pin_matches

log = structlog.get_logger("voip.voicemail")

MAX_MESSAGE_SECONDS = 120.0
# Shorter than this is a caller who hung up at the beep: not worth a message.
MIN_MESSAGE_SECONDS = 0.3
# A recorder's WAV is complete a little after its call is gone (about 0.3 s in 2.15).
FINALISE_SECONDS = 1.0
PIN_DIGIT_SECONDS = 6.0
MAX_PIN_DIGITS = 12
MENU_DIGIT_SECONDS = 8.0


@dataclass(frozen=True)
class ExpectedCall:
    mailbox: str
    caller: str
    caller_name: str


def wav_seconds(path: Path) -> float:
    with contextlib.suppress(wave.Error, OSError, EOFError), wave.open(str(path)) as reader:
        return float(reader.getnframes()) / float(reader.getframerate() or 8000)
    return 0.0


class VoicemailService:
    def __init__(
        self,
        db: Database,
        folder: Path,
        prompts: Prompts,
        features: FeatureStore,
        mwi: MwiNotifier | None,
    ) -> None:
        self.db = db
        self.folder = folder
        self.prompts = prompts
        self.features = features
        self.mwi = mwi
        self._expected: dict[str, ExpectedCall] = {}  # by the caller's Call-ID
        self._filing: set[asyncio.Task[None]] = set()

    # -- the router's side ---------------------------------------------------------------

    def expect(self, call_id: str, mailbox: str, caller: str, caller_name: str = "") -> None:
        self._expected[call_id] = ExpectedCall(mailbox, caller, caller_name)

    def forget(self, call_id: str) -> None:
        self._expected.pop(call_id, None)

    # -- the mailbox in the database -----------------------------------------------------

    async def messages(self, mailbox: str) -> list[VoicemailRow]:
        """New messages first, each group oldest first (the order they are heard in)."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(VoicemailRow)
                .where(VoicemailRow.mailbox == mailbox)
                .order_by(VoicemailRow.heard, VoicemailRow.created_at, VoicemailRow.id)
            )
            return list(rows.all())

    async def get(self, message_id: int) -> VoicemailRow | None:
        async with self.db.session() as session:
            return await session.get(VoicemailRow, message_id)

    async def counts(self, mailbox: str) -> tuple[int, int]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(VoicemailRow.heard, func.count())
                .where(VoicemailRow.mailbox == mailbox)
                .group_by(VoicemailRow.heard)
            )
            by_heard = {bool(heard): int(count) for heard, count in rows.all()}
        return by_heard.get(False, 0), by_heard.get(True, 0)

    async def mark_heard(self, message_id: int) -> None:
        async with self.db.session() as session:
            mailbox = await session.scalar(
                update(VoicemailRow)
                .where(VoicemailRow.id == message_id, VoicemailRow.heard.is_(False))
                .values(heard=True)
                .returning(VoicemailRow.mailbox)
            )
        if mailbox is not None:
            await self.tell_phones(mailbox)

    async def delete(self, message_id: int) -> bool:
        """Remove the row first, then the file: a crash leaves an orphan file, never a
        row whose recording is gone."""
        async with self.db.session() as session:
            row = await session.get(VoicemailRow, message_id)
            if row is None:
                return False
            mailbox, path = row.mailbox, Path(row.path)
            await session.execute(delete(VoicemailRow).where(VoicemailRow.id == message_id))
        await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("voicemail.deleted", mailbox=mailbox, message=message_id)
        await self.tell_phones(mailbox)
        return True

    async def tell_phones(self, mailbox: str) -> None:
        if self.mwi is None:
            return
        try:
            new, old = await self.counts(mailbox)
            await self.mwi.notify(mailbox, new, old)
        except Exception:
            log.exception("voicemail.mwi_failed", mailbox=mailbox)

    # -- media applications -----------------------------------------------------------------

    async def record_message(self, session: MediaSession) -> None:
        expected = self._expected.get(session.call_id)
        if expected is None:
            await session.hangup(404)
            return
        language = self.features.get(expected.mailbox).language
        greeting = await self.prompts.get("voicemail_greeting", language)
        await session.answer()
        await session.play_to_end(greeting, longest=30)
        await session.play_to_end(self.prompts.beep, longest=5)
        await session.stop_play()
        now = dt.datetime.now(dt.UTC)
        path = self.folder / expected.mailbox / f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        await session.record(path)
        try:
            await asyncio.wait_for(session.wait_end(), MAX_MESSAGE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(SessionEnded, ConnectionError):
                await session.stop_record()
                await session.play_to_end(await self.prompts.get("goodbye", language), longest=5)
                await session.hangup()
        finally:
            # The caller hanging up cancels this task: file the message in another one.
            task = asyncio.get_running_loop().create_task(self._file(expected, path, now))
            self._filing.add(task)
            task.add_done_callback(self._filing.discard)

    async def _file(self, expected: ExpectedCall, path: Path, started: dt.datetime) -> None:
        await asyncio.sleep(FINALISE_SECONDS)
        seconds = await asyncio.to_thread(wav_seconds, path)
        if seconds < MIN_MESSAGE_SECONDS:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            log.info("voicemail.nothing_left", mailbox=expected.mailbox, caller=expected.caller)
            return
        async with self.db.session() as session:
            row = VoicemailRow(
                mailbox=expected.mailbox,
                caller=expected.caller[:64],
                caller_name=expected.caller_name[:200],
                created_at=started,
                duration_seconds=round(seconds, 2),
                path=str(path),
                heard=False,
            )
            session.add(row)
        log.info(
            "voicemail.left",
            mailbox=expected.mailbox,
            caller=expected.caller,
            seconds=round(seconds, 1),
        )
        await self.tell_phones(expected.mailbox)

    async def mailbox_menu(self, session: MediaSession) -> None:
        """``*97``: the owner's PIN, then the messages one by one."""
        expected = self._expected.get(session.call_id)
        if expected is None:
            await session.hangup(404)
            return
        mailbox = expected.mailbox
        features = self.features.get(mailbox)
        language = features.language
        await session.answer()
        if not features.voicemail_pin_hash:
            await session.play_to_end(await self.prompts.get("no_pin", language), longest=15)
            await session.hangup()
            return
        await session.play(await self.prompts.get("enter_pin", language))
        pin = await self._collect(session, until="#")
        if not await asyncio.to_thread(pin_matches, pin, features.voicemail_pin_hash):
            log.warning("voicemail.wrong_pin", mailbox=mailbox, caller=expected.caller)
            await session.play_to_end(await self.prompts.get("wrong_pin", language), longest=10)
            await session.hangup()
            return
        messages = await self.messages(mailbox)
        if not messages:
            await session.play_to_end(await self.prompts.get("no_messages", language), longest=10)
            await session.hangup()
            return
        for message in messages:
            await session.play_to_end(message.path, longest=message.duration_seconds + 5)
            await self.mark_heard(message.id)
            await session.play(await self.prompts.get("message_menu", language))
            digit = await session.digit(MENU_DIGIT_SECONDS)
            if digit == "7":
                await self.delete(message.id)
                await session.play_to_end(
                    await self.prompts.get("message_deleted", language), longest=5
                )
        await session.play_to_end(await self.prompts.get("goodbye", language), longest=5)
        await session.hangup()

    @staticmethod
    async def _collect(session: MediaSession, *, until: str) -> str:
        digits = ""
        while len(digits) < MAX_PIN_DIGITS:
            digit = await session.digit(PIN_DIGIT_SECONDS)
            if digit is None or digit == until:
                break
            digits += digit
        return digits
