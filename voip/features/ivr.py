"""The auto-attendant (IVR): a spoken menu that sends the caller on by the digit pressed.

Menus are data (``voip_ivr_menus``): a number, a greeting spoken by espeak-ng in
the menu's language, and digit -> extension options (the call core's transfer
reaches registered extensions; a ring group as a target is not carried yet). The menu
logic is sans-I/O (:class:`MenuMachine`: digits and time-outs in, actions out) and
tested without a call; :meth:`IvrMenus.run` is the media application that drives it
on a worker: answer, play, read RFC 4733 digits, and transfer the caller by REFER
(the call core's own transfer, so the caller lands on the extension as with any
transfer and the worker's slot is freed).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import wave
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy import select

from core.db import Database

from ..media_engine.session import MediaSession, SessionEnded
from ..snapshot import SnapshotGuard
from .models import IvrMenuRow
from .prompts import Prompts

log = structlog.get_logger("voip.ivr")

DIGITS = "0123456789*#"
NUMBER = re.compile(r"^[0-9]{2,16}$")
LANGUAGES = ("zh", "en")
# The fixed phrases of every menu; the greeting is the menu's own text.
PHRASES = {
    "invalid": {"en": "Sorry, that is not an option.", "zh": "对不起，输入有误。"},
    "goodbye": {"en": "Goodbye.", "zh": "再见。"},
}


@dataclass(frozen=True)
class IvrMenu:
    number: str
    name: str
    greeting: str
    options: dict[str, str] = field(default_factory=dict)  # digit -> number to transfer to
    language: str = "zh"
    timeout_seconds: int = 5  # silence after the greeting before it is said again
    retries: int = 2  # wrong digits or silences before goodbye


def parse_options(text: str) -> dict[str, str]:
    """``"1=1002, 2=600"`` -> ``{"1": "1002", "2": "600"}``; ValueError says what is wrong."""
    options: dict[str, str] = {}
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        digit, _, target = part.partition("=")
        if len(digit) != 1 or digit not in DIGITS:
            raise ValueError(f"option {part!r}: one key of 0-9, * or # before '='")
        if not NUMBER.match(target):
            raise ValueError(f"option {part!r}: the target must be a number of 2-16 digits")
        if digit in options:
            raise ValueError(f"key {digit} is given twice")
        options[digit] = target
    return options


def format_options(options: dict[str, str]) -> str:
    return ", ".join(f"{digit}={target}" for digit, target in sorted(options.items()))


def check_menu(menu: IvrMenu) -> IvrMenu:
    if not NUMBER.match(menu.number):
        raise ValueError("the menu number must have 2-16 digits")
    if not menu.greeting.strip():
        raise ValueError("the greeting must not be empty")
    if menu.language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}")
    if not 1 <= menu.timeout_seconds <= 60 or not 0 <= menu.retries <= 9:
        raise ValueError("timeout 1-60 s, retries 0-9")
    if menu.number in menu.options.values():
        raise ValueError("a menu cannot send callers to itself")
    return menu


# -- the menu, sans-I/O --------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    phrase: str  # "greeting", "invalid" or "goodbye"


@dataclass(frozen=True)
class Transfer:
    number: str


@dataclass(frozen=True)
class Hangup:
    pass


Action = Play | Transfer | Hangup


class MenuMachine:
    """One caller's way through a menu. Feed it digits and time-outs; do what it returns."""

    def __init__(self, menu: IvrMenu) -> None:
        self.menu = menu
        self.misses = 0
        self.finished = False

    def start(self) -> list[Action]:
        return [Play("greeting")]

    def digit(self, digit: str) -> list[Action]:
        if self.finished:
            return []
        target = self.menu.options.get(digit)
        if target is not None:
            self.finished = True
            return [Transfer(target)]
        return self._miss(Play("invalid"))

    def timeout(self) -> list[Action]:
        return [] if self.finished else self._miss()

    def _miss(self, *first: Action) -> list[Action]:
        self.misses += 1
        if self.misses > self.menu.retries:
            self.finished = True
            return [*first, Play("goodbye"), Hangup()]
        return [*first, Play("greeting")]


# -- menus in memory, and the media application ---------------------------------------------


def _menu(row: IvrMenuRow) -> IvrMenu:
    return IvrMenu(
        number=row.number,
        name=row.name,
        greeting=row.greeting,
        options=parse_options(row.options),
        language=row.language,
        timeout_seconds=row.timeout_seconds,
        retries=row.retries,
    )


def _seconds(path: Path) -> float:
    with contextlib.closing(wave.open(str(path), "rb")) as audio:
        return audio.getnframes() / float(audio.getframerate() or 8000)


class IvrMenus:
    def __init__(self, db: Database, prompts: Prompts, *, refresh: float = 5.0) -> None:
        self.db = db
        self.prompts = prompts
        self.refresh = refresh
        self._menus: dict[str, IvrMenu] = {}
        self._guard = SnapshotGuard()
        # Which menu a media session plays, by the caller's Call-ID (set when routed).
        self._expected: dict[str, IvrMenu] = {}

    def get(self, number: str) -> IvrMenu | None:
        return self._menus.get(number)

    def all(self) -> list[IvrMenu]:
        return sorted(self._menus.values(), key=lambda menu: menu.number)

    async def reload(self) -> None:
        async with self._guard.applying():
            async with self.db.session() as session:
                rows = (await session.scalars(select(IvrMenuRow))).all()
            menus = {}
            for row in rows:
                try:
                    menus[row.number] = _menu(row)
                except ValueError as error:
                    log.error("ivr.invalid", number=row.number, error=str(error))
            self._menus = menus

    async def run_reloads(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("ivr.reload_failed")

    async def save(self, menu: IvrMenu) -> None:
        check_menu(menu)
        async with self.db.session() as session:
            row = await session.get(IvrMenuRow, menu.number)
            if row is None:
                row = IvrMenuRow(number=menu.number)
                session.add(row)
            row.name = menu.name
            row.greeting = menu.greeting
            row.options = format_options(menu.options)
            row.language = menu.language
            row.timeout_seconds = menu.timeout_seconds
            row.retries = menu.retries
        async with self._guard.applying():
            self._menus[menu.number] = menu

    async def remove(self, number: str) -> bool:
        async with self.db.session() as session:
            row = await session.get(IvrMenuRow, number)
            if row is None:
                return False
            await session.delete(row)
        async with self._guard.applying():
            self._menus.pop(number, None)
        return True

    def expect(self, call_id: str, menu: IvrMenu) -> None:
        self._expected[call_id] = menu

    def forget(self, call_id: str) -> None:
        self._expected.pop(call_id, None)

    async def phrase(self, menu: IvrMenu, phrase: str) -> Path:
        if phrase == "greeting":
            return await self.prompts.speak(menu.greeting, menu.language)
        texts = PHRASES[phrase]
        return await self.prompts.speak(texts.get(menu.language, texts["en"]), menu.language)

    async def run(self, session: MediaSession) -> None:
        """The media application: the menu on a worker's call."""
        menu = self._expected.get(session.call_id)
        if menu is None:
            await session.hangup(404)
            return
        machine = MenuMachine(menu)
        await session.answer()
        await asyncio.sleep(0.3)  # the phone's media is up before the first word
        try:
            await self._drive(session, machine, machine.start())
        except SessionEnded:
            pass  # the caller hung up

    async def _drive(
        self, session: MediaSession, machine: MenuMachine, actions: list[Action]
    ) -> None:
        menu = machine.menu
        while actions:
            action, actions = actions[0], actions[1:]
            if isinstance(action, Hangup):
                await session.hangup()
                return
            if isinstance(action, Transfer):
                log.info("ivr.transfer", menu=menu.number, to=action.number)
                await session.transfer(action.number)
                # The exchange calls the target, moves the caller and hangs up on us.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.wait_end(), 60)
                await session.hangup()
                return
            path = await self.phrase(menu, action.phrase)
            await session.play(path)
            if machine.finished:
                await asyncio.sleep(_seconds(path))  # goodbye: digits no longer matter
                continue
            if actions:
                # A phrase with more to follow: to its end, unless a digit barges in.
                digit = await session.digit(_seconds(path) + 0.5)
                if digit is not None:
                    await session.stop_play()
                    actions = machine.digit(digit)
                continue
            # The last phrase: digits may come while it plays and for the time-out after it.
            digit = await session.digit(_seconds(path) + menu.timeout_seconds)
            if digit is not None:
                await session.stop_play()
            actions = machine.digit(digit) if digit is not None else machine.timeout()
