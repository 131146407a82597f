"""A media session: one call answered by a media worker, as its application sees it.

An application (echo test, prompt, voicemail, IVR) is a coroutine that receives
the session and drives the call with ``answer``, ``play``, ``record``, ``digits``
and ``hangup``; every command goes over the worker's control channel.

A session can also be a call the worker places itself (``voip.place_call``): the
exchange learns it from the INVITE's origination header, and the session follows
the call's progress (``ringing``, ``confirmed``, the last SIP status) from the
worker's state events.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import WorkerProcess

# Sessions reserved for an INVITE that never reached the worker are freed after this.
ARRIVAL_SECONDS = 10.0


class SessionEnded(Exception):
    """The call is over (hung up, or its worker died) while the application waited."""


class MediaSession:
    def __init__(self, worker: WorkerProcess, app: str, call_id: str) -> None:
        self.worker = worker
        self.app = app
        self.call_id = call_id  # the caller's Call-ID at the exchange
        # The Request-URI user of the INVITE towards the worker: how it finds this session.
        self.token = f"ms-{secrets.token_hex(8)}"
        self.worker_call: int | None = None
        self.state = "reserved"
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.prompt_done = asyncio.Event()
        self.ended = asyncio.Event()
        self.exchange_done = False
        self.task: asyncio.Task[Any] | None = None
        # A call the worker places (voip.place_call): its progress as the worker saw it.
        self.outgoing = False
        self.ringing = False  # a 180/183 came back: the callee's phone rang
        self.confirmed = asyncio.Event()  # answered (2xx and ACK)
        self.last_status: int | None = None

    @property
    def target(self) -> str:
        return f"sip:{self.token}@{self.worker.host}:{self.worker.sip_port}"

    # -- driven by the worker's events ---------------------------------------------------

    def arrived(self, worker_call: int) -> None:
        self.worker_call = worker_call
        self.state = "ringing"

    def call_state(self, state: str, status: int | None) -> None:
        """The worker's INV state of this call (CALLING, EARLY, CONFIRMED, DISCONNECTED)."""
        if status:
            self.last_status = status
        if state == "EARLY":
            self.ringing = True
        elif state == "CONFIRMED":
            self.state = "answered"
            self.confirmed.set()

    def finished(self) -> None:
        """The worker's call is gone (or the worker): the slot is free."""
        self.state = "ended"
        self.ended.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- what applications call ------------------------------------------------------------

    async def _command(self, cmd: str, **fields: Any) -> None:
        if self.ended.is_set() or self.worker_call is None:
            raise SessionEnded(self.token)
        await self.worker.command(cmd, call=self.worker_call, **fields)

    async def answer(self) -> None:
        await self._command("answer", code=200)
        self.state = "answered"

    async def play(self, path: Path | str, *, loop: bool = False) -> None:
        self.prompt_done.clear()
        await self._command("play", path=str(path), loop=loop)

    async def play_to_end(self, path: Path | str, *, longest: float = 60.0) -> None:
        await self.play(path)
        await asyncio.wait_for(self.prompt_done.wait(), longest)

    async def stop_play(self) -> None:
        await self._command("stop_play")

    async def echo(self) -> None:
        await self._command("echo")

    async def record(self, path: Path | str) -> None:
        await self._command("record", path=str(path))

    async def stop_record(self) -> None:
        await self._command("stop_record")

    async def digit(self, within: float) -> str | None:
        """The next RFC 4733 digit the caller pressed, or None after ``within`` seconds."""
        try:
            return await asyncio.wait_for(self.digits.get(), within)
        except TimeoutError:
            return None

    async def transfer(self, number: str) -> None:
        """Send the caller to ``number``: the worker REFERs the exchange (RFC 3515)."""
        # The REFER goes in the call's dialog, so only the user part names the target.
        await self._command("transfer", uri=f"sip:{number}@exchange.invalid")

    async def hangup(self, code: int | None = None) -> None:
        if self.ended.is_set() or self.worker_call is None:
            return
        fields = {"code": code} if code else {}
        await self.worker.command("hangup", call=self.worker_call, **fields)

    async def wait_end(self) -> None:
        await self.ended.wait()


MediaApp = Callable[[MediaSession], Awaitable[None]]
