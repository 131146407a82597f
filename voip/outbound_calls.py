"""Calls the exchange places itself: :func:`voip.place_call` (an "originate").

Asterisk's originate (or a call file) rings a number and, once it answers, connects
it to an application. Here the application is a media worker, and the worker is
the calling side of an ordinary call through the call core:

1. The text is spoken by espeak-ng (``zh``: ``cmn``, ``en``) into an 8 kHz WAV, kept
   by a hash of the text (:class:`voip.features.prompts.Prompts`).
2. A media worker slot is taken. A full pool is the ``busy`` outcome at once, with
   a CDR like the one a phone's call gets from a full pool (486, system): never a
   wait for a slot.
3. The worker calls the exchange (``sip:<number>@<exchange>``) with a one-time
   origination token in :data:`HEADER`. The token travelled over the worker's pipe,
   so the INVITE that carries it, from that worker's own address and port, is the
   exchange's own call: the authenticator's trusted peer (:meth:`Originations.identify`)
   names its caller instead of a digest challenge, once.
4. The call core routes it like any call, with the dial plan's rules (extensions,
   short codes, the trunk and class of service; an E.164 number is first written
   as the plan dials it) but without the callee's personal features: forwarding
   and do-not-disturb are for people calling people, and a mailbox answering an
   alert would be an alert heard by nobody. The callee's phones ring for
   ``ring_seconds``; the two legs are bridged by the call core with media as
   usual (phone to worker inside, anchored through the RTP relay on the trunk),
   and the call's CDR is written when it ends.
5. On answer the worker plays the speech, pauses, plays it again (``times``), and
   hangs up; ``max_seconds`` bounds the whole call whatever happens.
6. With :class:`CollectDigits`, the callee's keys (RFC 4733 telephone-events, as the
   IVR reads them) are collected while the text is read and for a few seconds after:
   an accepted key stops the reading, the caller's ``on_accept`` is awaited (the
   moment to commit what the key means), and when it says yes a reply ("confirmed")
   is spoken before the hang-up. voip gives the keys no meaning of its own.

The outcome (:class:`CallOutcome`) says answered, busy, no answer, failed, or
cancelled (``before_dial`` said no), whether the number was dialled at all (a caller
that must never ring someone twice, sms escalation, may retry what was not dialled
and never what was), and the keys pressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import re
import secrets
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from core.context import AppContext
from voip.models import ClassOfService, Disposition
from voip.sip.message import Request

from .accounts import Account
from .dialplan import DialPlan, Refused, ToExtension, ToFeature
from .features.prompts import Prompts
from .media_engine import MediaPool, MediaSession, SessionEnded
from .routing import CallRouter, Forward, Refusal, Route
from .transport.base import Flow

if TYPE_CHECKING:
    from .pbx import Pbx
    from .server import VoipServer

log = structlog.get_logger("voip.originate")

# The header of the worker's INVITE that names its origination (never forwarded on:
# the call core builds the callee's INVITE afresh).
HEADER = "X-Unicomm-Origination"
# The country of this exchange: E.164 numbers of it are dialled as national numbers.
HOME_COUNTRY_CODE = "86"
DEFAULT_CALLER = "alert"
SETTLE_SECONDS = 0.6  # after the answer, before the first word: the phone's audio is up
PAUSE_SECONDS = 1.0  # between the two readings
REPLY_MARGIN = 3.0  # the reply's length and this, at most, before the hang-up
MAX_DIGITS = 32  # keys kept for the outcome
COMMAND_MARGIN = 15.0  # the exchange ends the ringing itself; this is only a safety net
END_SECONDS = 5.0  # for the worker to report its call gone after our hang-up
SPEECH_KEEP_SECONDS = 7 * 24 * 3600
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
DIALLED = re.compile(r"^[0-9*#]{1,32}$")


class CallResult(enum.StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELLED = "cancelled"  # before_dial said no: nothing was dialled


@dataclass(frozen=True)
class CallOutcome:
    result: CallResult
    # The number was dialled (the worker's INVITE may have left): its phone may have rung.
    dialled: bool
    sip_status: int | None = None
    detail: str = ""
    call_id: str | None = None  # the call's Call-ID at the exchange (its CDR's call_id)
    talk_seconds: float = 0.0
    digits: str = ""  # the keys the callee pressed, in order (with CollectDigits)
    # with CollectDigits: a key of ``accept`` was pressed and ``on_accept`` said yes
    confirmed: bool = False


@dataclass(frozen=True)
class CollectDigits:
    """The keys the callee may press (RFC 4733), and what an accepted one does.

    Keys are read while the text is spoken (barge-in) and for ``wait_seconds`` after
    the last reading. A key of ``accept`` ends the reading: ``on_accept`` (if given) is
    awaited with it, and when it returns True (or is not given) ``reply`` is spoken in
    the call's voice before the hang-up. False, or an exception, ends the call without
    the reply: the callee is never told "confirmed" for what was not recorded. Other
    keys are only noted. Every key pressed is in :attr:`CallOutcome.digits`.
    """

    accept: str = "1"
    reply: str = ""
    wait_seconds: float = 8.0
    on_accept: Callable[[str], Awaitable[bool]] | None = None

    def __post_init__(self) -> None:
        if not self.accept or not DIALLED.fullmatch(self.accept):
            raise ValueError("accept: one or more of the keys 0-9 * #")
        if self.wait_seconds < 0:
            raise ValueError("wait_seconds must not be negative")


def dialled_number(number: str, plan: DialPlan) -> str | None:
    """``number`` as this exchange dials it: an extension or dial string as is, and an
    E.164 number through the outbound prefix (national when it is of this country)."""
    text = re.sub(r"[\s\-()]", "", number)
    if E164.fullmatch(text):
        digits = text[1:]
        prefix = plan.outbound_prefix
        if digits.startswith(HOME_COUNTRY_CODE):
            national = digits[len(HOME_COUNTRY_CODE) :]
            if len(national) == 11 and national.startswith("1"):
                return prefix + national  # a mobile
            return prefix + "0" + national  # area code and number
        return prefix + "00" + digits
    return text if DIALLED.fullmatch(text) else None


def classify(status: int | None, rang: bool) -> tuple[CallResult, str]:
    """The outcome of a call that was never answered, from its final SIP status."""
    if status in (486, 600, 603):
        return CallResult.BUSY, f"{status} busy or declined"
    if rang and status in (408, 480, 487):
        return CallResult.NO_ANSWER, "rang, nobody answered"
    if status == 480:
        return CallResult.FAILED, "480 not reachable (no phone registered)"
    if status == 404:
        return CallResult.FAILED, "404 no such number"
    if status == 403:
        return CallResult.FAILED, "403 not allowed by the dial plan"
    return CallResult.FAILED, f"{status or 'no'} final answer"


def wav_seconds(path: Path) -> float:
    with contextlib.suppress(wave.Error, OSError, EOFError), wave.open(str(path)) as reader:
        return float(reader.getnframes()) / float(reader.getframerate() or 8000)
    return 0.0


@dataclass(eq=False)
class _Pending:
    token: str
    caller: Account
    session: MediaSession
    ring_seconds: float
    used: bool = False
    on_end: list[Callable[[], None]] = field(default_factory=list)


class OriginationRouter:
    """The call core's router: originations by the dial plan only, every other call as before."""

    def __init__(self, inner: CallRouter | None, originations: Originations) -> None:
        self.inner = inner
        self.originations = originations

    async def route(self, caller: Account, number: str, request: Request) -> Route:
        pending = self.originations.claimed(request, caller)
        if pending is not None:
            return await self.originations.route(pending, number, request)
        return await self.inner.route(caller, number, request) if self.inner else None


class Originations:
    """The exchange's side of ``place_call`` on one node: started after the PBX."""

    def __init__(self, ctx: AppContext, server: VoipServer, pbx: Pbx) -> None:
        self.ctx = ctx
        self.server = server
        self.pbx = pbx
        self.speech = Prompts(ctx.settings.path("media", "alerts"))
        # One synthesis at a time: calls of one wave speak the same text into the same file.
        self._speaking = asyncio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._router: OriginationRouter | None = None
        self.running = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        b2bua = self.server.b2bua
        if b2bua is None:
            return  # SIP is down: place_call answers "failed"
        self.server.authenticator.trusted_peers.append(self.identify)
        self._router = OriginationRouter(b2bua.router, self)
        b2bua.router = self._router
        self.running = True
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._sweep_speech)

    async def stop(self) -> None:
        self.running = False
        with contextlib.suppress(ValueError):
            self.server.authenticator.trusted_peers.remove(self.identify)
        b2bua = self.server.b2bua
        if b2bua is not None and self._router is not None and b2bua.router is self._router:
            b2bua.router = self._router.inner
        self._router = None

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()

    def _sweep_speech(self) -> None:
        """Alerts' speech is kept a week (a repeated alert is not spoken again), then goes."""
        folder = self.speech.folder
        if not folder.is_dir():
            return
        cutoff = time.time() - SPEECH_KEEP_SECONDS
        for path in folder.glob("tts-*.wav"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    # -- the call core's side ------------------------------------------------------------------

    def identify(self, request: Request, flow: Flow) -> Account | None:
        """Trusted peer: the worker's INVITE naming a pending origination, from that worker."""
        token = request.headers.get(HEADER)
        if not token or request.method != "INVITE":
            return None
        pending = self._pending.get(token.strip())
        worker = pending.session.worker if pending is not None else None
        if (
            pending is None
            or worker is None
            or pending.used
            or flow.transport != "UDP"
            or flow.host != worker.host
            or flow.port != worker.sip_port
        ):
            log.warning("originate.unknown_token", source=f"{flow.host}:{flow.port}")
            return None  # challenged like any stranger
        pending.used = True
        pending.session.call_id = request.call_id
        return pending.caller

    def claimed(self, request: Request, caller: Account) -> _Pending | None:
        token = request.headers.get(HEADER)
        pending = self._pending.get(token.strip()) if token else None
        # Only the INVITE identify() let in: a phone cannot borrow an origination's routing.
        return pending if pending is not None and pending.caller is caller else None

    async def route(self, pending: _Pending, number: str, request: Request) -> Route:
        exchange = self.pbx.router
        if exchange is None:
            return Refusal(503, Disposition.FAILED, "Service Unavailable (no dial plan)")
        decision = exchange.store.plan.decide(number, pending.caller.class_of_service)
        if isinstance(decision, ToFeature):
            return Refusal(403, Disposition.REJECTED, "Forbidden (not a number to call)")
        if (isinstance(decision, ToExtension) and decision.via_short_code is None) or (
            isinstance(decision, Refused) and decision.status == 404
        ):
            route: Route = await exchange._to_extension(number)
        else:
            route = await exchange.route(pending.caller, number, request)
            if route is None:
                route = await exchange._to_extension(number)
        if isinstance(route, Forward):
            route.ring_seconds = pending.ring_seconds
            route.next_step = None  # no forwarding, voicemail or ring group after it
            route.on_end.extend(pending.on_end)
        return route

    # -- placing a call ----------------------------------------------------------------------

    def _exchange_address(self) -> tuple[str, int] | None:
        endpoint = self.server.endpoint
        port = endpoint.ports.get("UDP") if endpoint is not None else None
        if not port:
            return None
        host = self.ctx.settings.sip_host
        return ("127.0.0.1" if host in ("", "0.0.0.0", "::") else host), port

    def _refused_by_pool(self, caller: Account, number: str) -> None:
        """A call that a full pool kept from starting gets its CDR, like a phone's would."""
        now = dt.datetime.now(dt.UTC)
        self.server.cdr.add(
            call_id=f"originate-{secrets.token_hex(8)}",
            caller=caller.number,
            callee=number[:64],
            caller_department_id=caller.department_id,
            callee_department_id=None,
            direction="internal",
            started_at=now,
            answered_at=None,
            ended_at=now,
            duration_seconds=0.0,
            disposition=Disposition.BUSY,
            hangup_side="system",
            sip_status=486,
            node=self.server.node,
        )

    async def place_call(
        self,
        number: str,
        text: str,
        *,
        language: str,
        caller_id: str,
        caller_name: str,
        department_id: int | None,
        class_of_service: ClassOfService,
        ring_seconds: float,
        times: int,
        max_seconds: float,
        before_dial: Callable[[], Awaitable[bool]] | None,
        collect: CollectDigits | None = None,
    ) -> CallOutcome:
        def failed(detail: str, dialled: bool = False) -> CallOutcome:
            log.info("originate.failed", number=number, detail=detail, dialled=dialled)
            return CallOutcome(CallResult.FAILED, dialled, detail=detail)

        pool = self.pbx.pool
        address = self._exchange_address()
        exchange = self.pbx.router
        if not self.running or address is None or exchange is None:
            return failed("the telephony exchange is not running")
        if pool is None or not any(worker.ready.is_set() for worker in pool.workers):
            return failed("no media workers (voip_media_workers = 0, or none is up)")
        dialled = dialled_number(number, exchange.store.plan)
        if dialled is None:
            return failed(f"{number!r} is not a number to call")
        if not text.strip():
            return failed("nothing to say")
        voice = "en" if language == "en" else "zh"
        reply: Path | None = None
        try:
            self.speech.folder.mkdir(parents=True, exist_ok=True)
            async with self._speaking:  # the file of a text already spoken is used as is
                speech = await self.speech.speak(text.strip(), voice)
                if collect is not None and collect.reply.strip():
                    # Spoken now: the callee hears it the moment their key is taken.
                    reply = await self.speech.speak(collect.reply.strip(), voice)
        except Exception as error:  # espeak-ng or ffmpeg missing or failing
            log.exception("originate.speech_failed")
            return failed(f"speech failed: {error}"[:200])
        caller = Account(
            0,
            caller_id or DEFAULT_CALLER,
            caller_name,
            department_id,
            "",
            "",
            True,
            class_of_service,
        )
        session = pool.reserve_outgoing()
        if session is None:
            log.info("originate.pool_full", number=dialled, capacity=pool.capacity)
            self._refused_by_pool(caller, dialled)
            return CallOutcome(
                CallResult.BUSY, False, 486, "media workers full: the call was not placed"
            )
        token = secrets.token_urlsafe(18)
        pending = _Pending(token, caller, session, ring_seconds)
        pending.on_end.append(lambda: pool.exchange_ended(session))
        try:
            if before_dial is not None and not await before_dial():
                return CallOutcome(CallResult.CANCELLED, False, detail="not dialled (before_dial)")
            self._pending[token] = pending
            host, port = address
            log.info("originate.dialling", number=dialled, worker=session.worker.index)
            try:
                await session.worker.command(
                    "call",
                    session=session.token,
                    uri=f"sip:{dialled}@{host}:{port}",
                    headers={HEADER: token},
                )
            except TimeoutError:
                if session.worker_call is None:
                    await self._hang_up(session)
                    return failed("the media worker did not answer", dialled=True)
            except (RuntimeError, ConnectionError) as error:
                if session.worker_call is None:
                    return failed(f"the media worker could not call: {error}"[:200])
            async with asyncio.timeout(ring_seconds + COMMAND_MARGIN + max_seconds):
                return await self._follow(
                    session, speech, times, ring_seconds, max_seconds, collect, reply
                )
        except TimeoutError:
            await self._hang_up(session)
            return failed("the call went over its time", dialled=True)
        finally:
            self._pending.pop(token, None)
            if session.worker_call is None:
                MediaPool.release_unused(session)
            elif not session.ended.is_set():
                # Cancelled (shutdown) or failed: the call does not outlive its caller.
                pool.spawn_task(self._hang_up(session))

    async def _follow(
        self,
        session: MediaSession,
        speech: Path,
        times: int,
        ring_seconds: float,
        max_seconds: float,
        collect: CollectDigits | None = None,
        reply: Path | None = None,
    ) -> CallOutcome:
        call_id = session.call_id or None
        answered = await _first(
            session.confirmed.wait(), session.ended.wait(), within=ring_seconds + COMMAND_MARGIN
        )
        if not session.confirmed.is_set():
            if not answered:  # nothing final from the exchange in time: give up on it
                await self._hang_up(session)
            result, detail = classify(session.last_status, session.ringing)
            log.info("originate.unanswered", call_id=call_id, result=result.value, detail=detail)
            return CallOutcome(result, True, session.last_status, detail, call_id)
        started = time.monotonic()
        log.info("originate.answered", call_id=call_id)
        longest = wav_seconds(speech) + 5.0
        keys = collect.accept if collect is not None else ""
        pressed: list[str] = []
        accepted: str | None = None
        confirmed = False
        try:
            async with asyncio.timeout(max_seconds):
                await asyncio.sleep(SETTLE_SECONDS)
                for reading in range(max(1, times)):
                    if reading:
                        accepted = await _listen(session, keys, pressed, PAUSE_SECONDS)
                    if accepted or session.ended.is_set():
                        break
                    await session.play(speech)
                    accepted = await _listen(session, keys, pressed, longest, session.prompt_done)
                    if accepted:
                        break
                if collect is not None and not accepted and not session.ended.is_set():
                    accepted = await _listen(session, keys, pressed, collect.wait_seconds)
                if collect is not None and accepted:
                    with contextlib.suppress(SessionEnded, ConnectionError, RuntimeError):
                        await session.stop_play()
                    confirmed = await _accepted(collect, accepted, call_id)
                    if confirmed and reply is not None and not session.ended.is_set():
                        await session.play(reply)
                        await _first(
                            session.prompt_done.wait(),
                            session.ended.wait(),
                            within=wav_seconds(reply) + REPLY_MARGIN,
                        )
                await _first(session.ended.wait(), within=0.3)
        except (SessionEnded, TimeoutError, ConnectionError, RuntimeError):
            pass  # the callee hung up (or the worker went): it was answered all the same
        talk = time.monotonic() - started
        await self._hang_up(session)
        digits = "".join(pressed)[:MAX_DIGITS]
        detail = "answered, the alert was read"
        if accepted:
            detail += f"; {accepted} pressed" + ("" if confirmed else ", not confirmed")
        elif digits:
            detail += f"; keys {digits}"
        return CallOutcome(
            CallResult.ANSWERED,
            True,
            200,
            detail,
            call_id,
            round(talk, 1),
            digits,
            confirmed,
        )

    @staticmethod
    async def _hang_up(session: MediaSession) -> None:
        with contextlib.suppress(Exception):
            await session.hangup()
        await _first(session.ended.wait(), within=END_SECONDS)


async def _accepted(collect: CollectDigits, key: str, call_id: str | None) -> bool:
    """The caller's ``on_accept`` for an accepted key; False when it fails or says no."""
    if collect.on_accept is None:
        return True
    try:
        return bool(await collect.on_accept(key))
    except Exception:
        log.exception("originate.on_accept_failed", call_id=call_id, key=key)
        return False


async def _listen(
    session: MediaSession,
    keys: str,
    pressed: list[str],
    within: float,
    *until: asyncio.Event,
) -> str | None:
    """Wait ``within`` seconds at most, or until an event of ``until`` is set or the call
    ends; a key of ``keys`` pressed meanwhile ends the wait and is returned. Every key
    read goes into ``pressed``; without ``keys`` none is read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        others = [asyncio.ensure_future(session.ended.wait())]
        others += [asyncio.ensure_future(event.wait()) for event in until]
        digit_task = asyncio.ensure_future(session.digits.get()) if keys else None
        tasks = others + ([digit_task] if digit_task is not None else [])
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
        if digit_task is not None and digit_task in done:
            digit = digit_task.result()
            pressed.append(digit)
            if digit in keys:
                return digit
            if not any(task in done for task in others):
                continue  # another key: keep listening
        return None


async def _first(*waits: Awaitable[object], within: float) -> bool:
    """Wait for the first of ``waits`` for at most ``within`` seconds; True if one finished."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for task in tasks:
            task.cancel()


ORIGINATIONS = web.AppKey("voip_originations", Originations)


async def place_call(
    app: web.Application,
    number: str,
    text: str,
    *,
    language: str = "zh",
    caller_id: str = "",
    caller_name: str = "",
    department_id: int | None = None,
    class_of_service: ClassOfService | str = ClassOfService.NATIONAL,
    ring_seconds: float = 30.0,
    times: int = 2,
    max_seconds: float = 300.0,
    before_dial: Callable[[], Awaitable[bool]] | None = None,
    collect: CollectDigits | None = None,
) -> CallOutcome:
    """Ring ``number`` and, when it answers, read ``text`` to it (``times`` times), then hang up.

    ``number``: an extension, a dial string (``0`` + an outside number), or an E.164
    number (dialled through the trunk by the dial plan's rules). ``language``: ``zh``
    or ``en``, the espeak-ng voice. ``caller_id``/``caller_name``: what the callee's
    phone shows (``alert`` when empty; on the trunk the department's or the trunk's
    caller ID); ``department_id`` is the CDR's and the cost report's department;
    ``class_of_service`` how far the call may reach (national: mobiles included).
    ``before_dial``, when given, is awaited once everything is ready, just before
    the number is dialled; False cancels the call (nothing rang). ``collect``, when
    given, reads the callee's keys (:class:`CollectDigits`): an accepted key ends the
    reading, is handed to its ``on_accept``, and is answered with its ``reply``; the
    keys pressed are in the outcome's ``digits`` (the text should say which key to press).

    Never raises for a call that could not be made: the outcome says why. Returns
    within about ``ring_seconds + max_seconds + 15`` seconds; a full media pool is
    ``busy`` at once.
    """
    originations = app.get(ORIGINATIONS)
    if originations is None:
        return CallOutcome(CallResult.FAILED, False, detail="the telephony exchange is not set up")
    if language not in ("zh", "en"):
        raise ValueError("language is zh or en")
    return await originations.place_call(
        number,
        text,
        language=language,
        caller_id=caller_id,
        caller_name=caller_name,
        department_id=department_id,
        class_of_service=ClassOfService(class_of_service),
        ring_seconds=ring_seconds,
        times=times,
        max_seconds=max_seconds,
        before_dial=before_dial,
        collect=collect,
    )
