"""Hold with music: the held party hears music from a media worker until the call resumes.

Media goes phone to phone, so the exchange cannot slip music into a stream it never
sees. Like Asterisk and FreeSWITCH it moves the held party's media instead:

1. The holding phone's re-INVITE (``a=sendonly``, ``a=inactive`` or ``c=0.0.0.0``)
   is relayed as usual with its streams made ``inactive``: the holder stops sending,
   and the held phone's answer goes back to the holder unchanged.
2. Once that exchange is done, the exchange calls a media worker session (the ``moh``
   application) *without* an offer; the worker's 200 carries one, the held phone is
   re-INVITEd with it, and the held phone's answer goes to the worker in the ACK
   (RFC 3261 §14, as the call core's transfer does). The worker loops the music.
3. The holder's next re-INVITE (resume) is relayed to the held phone as usual: its
   offer names the holder again, so media flows phone to phone; after the held
   phone's 2xx the worker's call is ended (BYE) and its slot freed.

An anchored call (trunk, recorded) keeps its relay: every body crosses it as any
other does, and the relay re-latches on the worker and back. While the music plays,
a re-INVITE from the held phone is answered 491 (its peer is the worker for now),
as is the holder's resume that arrives while the music is still being set up. A
transfer that moves the held party ends the music too. Without media workers,
hold is relayed as before (the held party hears silence).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from media.audio import INT16_FULL_SCALE, write_wav
from voip.sip.dialog import Dialog
from voip.sip.errors import SdpParseError, SipParseError
from voip.sip.headers import Headers
from voip.sip.ids import new_call_id, new_tag
from voip.sip.message import Request, Response
from voip.sip.sdp import parse_sdp
from voip.sip.uri import parse_uri

from ..b2bua import Leg
from ..media_engine import MediaPool, MediaSession
from ..routing import Detour
from ..transport.base import Flow

if TYPE_CHECKING:
    from ..b2bua import B2bua, Call

log = structlog.get_logger("voip.features")

MOH_APP = "moh"
MOH_FILE = "moh.wav"
RATE = 8000


# -- the music -------------------------------------------------------------------------------

# A slow pentatonic tune (semitones above A3) with a bass note per bar: pleasant enough,
# and never one steady tone (a line test would mistake that for a fault).
_MELODY = [7, 9, 12, 14, 16, 14, 12, 9, 7, 4, 7, 9, 12, 9, 7, 4]
_BASS = [-12, -12, -5, -5, -7, -7, -12, -12]
_NOTE_SECONDS = 0.5


def _note(semitones: int, seconds: float, level: float) -> np.ndarray:
    frequency = 220.0 * 2 ** (semitones / 12)
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(
        (0.6**k) * np.sin(2 * np.pi * frequency * (k + 1) * t) for k in range(3)
    )  # a soft organ: the fundamental and two fading harmonics
    attack = np.minimum(t / 0.03, 1.0)
    decay = np.exp(-2.2 * t)
    result: np.ndarray = level * wave * attack * decay
    return result


def synthesize_music(repeats: int = 2) -> np.ndarray:
    """About 16 s of music as int16 samples at 8 kHz (made with numpy, no tool needed)."""
    melody = np.concatenate([_note(n, _NOTE_SECONDS, 0.35) for n in _MELODY * repeats])
    bar = _NOTE_SECONDS * len(_MELODY) / len(_BASS)
    bass = np.concatenate([_note(n, bar, 0.25) for n in _BASS * repeats])
    length = min(len(melody), len(bass))
    mixed = melody[:length] + bass[:length]
    peak = float(np.max(np.abs(mixed))) or 1.0
    samples: np.ndarray = (mixed / peak * 0.5 * (INT16_FULL_SCALE - 1)).astype(np.int16)
    return samples


async def prepare_music(folder: Path, configured: str = "") -> Path:
    """The music file the workers play: the configured one as 8 kHz mono WAV, or ours.

    Made once at first start (kept in ``folder``); a configured file in any format
    ffmpeg reads is converted when it is newer than the converted copy.
    """
    if configured:
        source, target = Path(configured), folder / "moh-configured.wav"
        state = await asyncio.to_thread(_freshness, source, target)
        if state == "fresh" or (state == "stale" and await _convert(source, target)):
            return target
        log.warning("moh.file_unusable", path=configured)
    return await asyncio.to_thread(_synthesized, folder)


def _freshness(source: Path, target: Path) -> str:
    if not source.is_file():
        return "missing"
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.exists() and target.stat().st_mtime >= source.stat().st_mtime
    return "fresh" if fresh else "stale"


def _synthesized(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MOH_FILE
    if not target.exists():
        partial = folder / f"{MOH_FILE}.partial"
        write_wav(partial, synthesize_music())
        partial.replace(target)
    return target


async def _convert(source: Path, target: Path) -> bool:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    partial = target.with_suffix(".partial.wav")
    process = await asyncio.create_subprocess_exec(
        ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-i", str(source),
        "-ac", "1", "-ar", str(RATE), "-sample_fmt", "s16", "-t", "600", str(partial),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await process.communicate()
    if process.returncode != 0:
        log.warning("moh.convert_failed", error=errors.decode(errors="replace")[-300:])
        partial.unlink(missing_ok=True)
        return False
    partial.replace(target)
    return True


def held_as_inactive(body: bytes) -> bytes:
    """The holder's offer with every held stream ``inactive``: the held phone sends nothing."""
    description = parse_sdp(body)
    for media in description.media:
        if media.port != 0 and description.is_media_on_hold(media):
            media.set_direction("inactive")
    return bytes(description)


# -- the choreography --------------------------------------------------------------------------


@dataclass(eq=False)
class _Hold:
    call: Call
    holder: Leg
    held: Leg
    session: MediaSession
    state: str = "starting"  # starting -> playing -> ended
    worker: Leg | None = None  # our call to the worker
    invite: Request | None = None
    worker_ack: Request | None = None


class MusicOnHold:
    """Hooked on the call core (``B2bua.in_dialog_hook`` and its watchers) by the features."""

    def __init__(self, music: Path | None = None) -> None:
        self.music = music
        self.b2bua: B2bua | None = None
        self.pool: MediaPool | None = None
        self.holds: dict[str, _Hold] = {}  # by the caller's Call-ID

    def bind(self, b2bua: B2bua, pool: MediaPool | None) -> None:
        self.b2bua = b2bua
        self.pool = pool
        b2bua.in_dialog_hook = self.on_reinvite

    def unbind(self) -> None:
        if self.b2bua is not None and self.b2bua.in_dialog_hook == self.on_reinvite:
            self.b2bua.in_dialog_hook = None
        for hold in list(self.holds.values()):
            self._stop(hold)

    async def play(self, session: MediaSession) -> None:
        """The ``moh`` media application: answer with an offer, loop the music."""
        if self.music is None:
            await session.hangup(503)
            return
        await session.answer()
        await session.play(self.music, loop=True)
        await session.wait_end()

    # -- the hook: an in-dialog INVITE --------------------------------------------------------

    def on_reinvite(self, call: Call, leg: Leg, request: Request) -> Detour | None:
        hold = self.holds.get(call.id)
        if hold is not None and (leg is hold.held or hold.state == "starting"):
            return Detour(status=491)  # its peer is the worker for now, or about to be
        if not request.body:
            return None
        try:
            holding = parse_sdp(request.body).is_on_hold
            inactive = held_as_inactive(request.body) if holding else None
        except (SdpParseError, ValueError):
            return None
        if hold is not None:
            # The holder again: resume (or hold anew); the music stops once the held
            # phone has taken the holder's offer.
            def after_resume(status: int) -> None:
                if 200 <= status < 300:
                    self._stop(hold)
                    if holding:
                        self._start(call, leg, status)

            return Detour(body=inactive, after=after_resume)
        if not holding or not self._possible(call, leg):
            return None
        return Detour(body=inactive, after=lambda status: self._start(call, leg, status))

    def _possible(self, call: Call, holder: Leg) -> bool:
        pool, held = self.pool, call.other(holder)
        return (
            self.music is not None
            and pool is not None
            and bool(pool.workers)
            and held is not None
            and held.dialog is not None
            and call.transfer is None
            and pool.host not in (held.flow.host, holder.flow.host)  # not a worker's call
        )

    # -- the held phone to the worker -----------------------------------------------------------

    def _start(self, call: Call, holder: Leg, status: int) -> None:
        b2bua, pool, held = self.b2bua, self.pool, call.other(holder)
        if b2bua is None or pool is None or held is None or held.dialog is None:
            return
        if status >= 300 or call.state != "answered" or call.id in self.holds:
            return
        if not self._possible(call, holder):
            return
        # A Call-ID of its own for the slot: a worker that dies leaves the call up.
        session = pool.reserve(MOH_APP, f"moh-{call.id}")
        if session is None:
            log.info("moh.pool_full", call_id=call.id)
            return
        hold = _Hold(call, holder, held, session)
        self.holds[call.id] = hold
        endpoint = b2bua.endpoint
        flow = Flow("UDP", session.worker.host, session.worker.sip_port)
        headers = Headers()
        headers.add("Via", str(endpoint.via(flow.transport)))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:moh@{b2bua.realm}>;tag={new_tag()}")
        headers.add("To", f"<{session.target}>")
        headers.add("Call-ID", new_call_id())
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{endpoint.local_uri('moh', flow.transport)}>")
        invite = Request("INVITE", parse_uri(session.target), headers, b"")  # no offer
        hold.invite = invite
        hold.worker = Leg("b", flow, invite.call_id)
        transaction = endpoint.send_request(invite, flow)
        b2bua.expect(transaction, lambda response: self._worker_answered(hold, response))
        log.info("moh.started", call_id=call.id, held=_party(call, held))

    def _worker_answered(self, hold: _Hold, response: Response | None) -> None:
        b2bua, worker = self.b2bua, hold.worker
        if b2bua is None or worker is None or hold.invite is None:
            return
        if response is None or response.status >= 300:
            log.warning("moh.worker_refused", status=response.status if response else 408)
            self._stop(hold)
            return
        if response.status < 200:
            return
        if worker.dialog is None:
            try:
                worker.dialog = Dialog.from_uac(hold.invite, response)
            except SipParseError:
                self._stop(hold)
                return
        call, held = hold.call, hold.held
        if hold.state != "starting" or not response.body or held.dialog is None:
            self._stop(hold)
            return
        offer = b2bua.anchored(call, response.body, towards_caller=held is call.a)
        b2bua.send_in_dialog(
            held,
            "INVITE",
            body=offer,
            content_type=response.headers.get("Content-Type") or "application/sdp",
            on_response=lambda answer: self._held_answered(hold, answer),
        )

    def _held_answered(self, hold: _Hold, response: Response | None) -> None:
        b2bua, worker, held, call = self.b2bua, hold.worker, hold.held, hold.call
        if b2bua is None or worker is None or worker.dialog is None:
            return
        if response is not None and response.status < 200:
            return
        endpoint = b2bua.endpoint
        answer = b""
        if response is not None and response.status < 300 and held.dialog is not None:
            held.dialog.update_from_response(response)
            ack = held.dialog.create_ack(
                response.cseq.number, via=endpoint.via(held.flow.transport)
            )
            endpoint.send(ack, held.flow)
            answer = b2bua.anchored(call, response.body, towards_caller=held is not call.a)
        # The worker's offer is answered in our ACK (nothing when the held phone refused).
        hold.worker_ack = worker.dialog.create_ack(
            1,
            via=endpoint.via(worker.flow.transport),
            body=answer,
            content_type="application/sdp" if answer else None,
        )
        endpoint.send(hold.worker_ack, worker.flow)
        if not answer or hold.state != "starting" or call.state != "answered":
            self._stop(hold)
            return
        hold.state = "playing"
        log.info("moh.playing", call_id=call.id)

    def _stop(self, hold: _Hold) -> None:
        if hold.state == "ended":
            return
        hold.state = "ended"
        if self.holds.get(hold.call.id) is hold:
            del self.holds[hold.call.id]
        worker = hold.worker
        if self.b2bua is not None and worker is not None and worker.dialog is not None:
            if hold.worker_ack is None:  # its 2xx waits for an ACK before a BYE means anything
                hold.worker_ack = worker.dialog.create_ack(
                    1, via=self.b2bua.endpoint.via(worker.flow.transport)
                )
                self.b2bua.endpoint.send(hold.worker_ack, worker.flow)
            self.b2bua.send_in_dialog(worker, "BYE", on_response=lambda _: None)
        if self.pool is not None:
            self.pool.exchange_ended(hold.session)
        log.info("moh.stopped", call_id=hold.call.id)

    # -- the call's life ------------------------------------------------------------------------

    def watch(self, call: Call) -> None:
        hold = self.holds.get(call.id)
        if hold is None:
            return
        legs = (call.a, call.answered)
        if call.state == "ended" or hold.held not in legs or hold.holder not in legs:
            self._stop(hold)  # the call is over, or a transfer took the holder's place


def _party(call: Call, leg: Leg) -> str:
    return call.caller.number if leg is call.a else call.callee.number
