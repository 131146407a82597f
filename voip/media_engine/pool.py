"""The media worker pool: supervised pjsua2 processes that terminate calls' media.

Each :class:`WorkerProcess` runs ``worker.py`` with its own SIP port and RTP port
range on the media host (a loopback address of its own, listed as trusted), and
talks JSON lines with it over stdin/stdout. The :class:`MediaPool` spreads sessions
over the workers: a worker holds at most four calls (the wheel's hard limit), and
when every slot is taken :meth:`MediaPool.reserve` says so at once, so the caller
hears busy instead of waiting. A worker that dies has its calls ended by the exchange
(BYE to the caller, CDR written) and is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from .session import ARRIVAL_SECONDS, MediaApp, MediaSession

log = structlog.get_logger("voip.media")

WORKER_MAIN = Path(__file__).with_name("worker.py")
CALLS_PER_WORKER = 4
RTP_PORTS_PER_WORKER = 16  # 4 calls x (RTP + RTCP), doubled for pjsua2's re-binds
READY_SECONDS = 15.0
COMMAND_SECONDS = 5.0
RESTART_MIN, RESTART_MAX = 0.2, 30.0
# The application name of sessions that are calls a worker places (voip.place_call).
ORIGINATE_APP = "originate"
# A session the exchange ended but whose worker call lingers is hung up after this.
LINGER_SECONDS = 5.0


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1: a killed server leaves no worker behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_udp_block(host: str, size: int) -> int:
    """A run of ``size`` free UDP ports (checked once; pjsua2 binds them later)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - size, 2)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise OSError(f"no block of {size} free UDP ports on {host}")


class WorkerProcess:
    def __init__(
        self, pool: MediaPool, index: int, host: str, sip_port: int, rtp_port: int
    ) -> None:
        self.pool = pool
        self.index = index
        self.host = host
        self.sip_port = sip_port
        self.rtp_port = rtp_port
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.sessions: dict[str, MediaSession] = {}  # by token
        self.by_call: dict[int, MediaSession] = {}  # by the worker's call id
        self.restarts = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[None]] = {}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def free(self) -> int:
        return CALLS_PER_WORKER - len(self.sessions) if self.ready.is_set() else 0

    async def spawn(self) -> None:
        log_path = self.pool.log_dir / f"worker-{self.index}.log"
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER_MAIN),
            "--host",
            self.host,
            "--sip-port",
            str(self.sip_port),
            "--rtp-port",
            str(self.rtp_port),
            "--rtp-port-count",
            str(RTP_PORTS_PER_WORKER),
            "--log",
            str(log_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    async def run(self) -> None:
        """Read the worker's events until it exits; then fail what was waiting on it."""
        process = self.process
        assert process is not None and process.stdout is not None
        while line := await process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("media.worker_noise", worker=self.index, line=line[:200])
                continue
            if "event" in message:
                self._event(message)
            else:
                future = self._pending.pop(int(message.get("id") or 0), None)
                if future is not None and not future.done():
                    if message.get("ok"):
                        future.set_result(None)
                    else:
                        future.set_exception(RuntimeError(str(message.get("error"))))
        await process.wait()

    def _event(self, message: dict[str, Any]) -> None:
        kind = message["event"]
        if kind == "ready":
            self.ready.set()
            log.info("media.worker_ready", worker=self.index, pid=self.pid, sip_port=self.sip_port)
        elif kind == "incoming":
            call = int(message["call"])
            session = self.sessions.get(str(message.get("session", "")))
            if session is None or session.worker_call is not None:
                # Not a session we opened (a stray INVITE): nobody here by that name.
                self.pool.spawn_task(self.command("hangup", call=call, code=404))
                return
            session.arrived(call)
            self.by_call[call] = session
            self.pool.start_app(session)
        elif kind == "outgoing":
            call = int(message["call"])
            session = self.sessions.get(str(message.get("session", "")))
            if session is None or not session.outgoing or session.worker_call is not None:
                self.pool.spawn_task(self.command("hangup", call=call))  # nobody waits for it
                return
            session.arrived(call)
            session.call_id = str(message.get("call_id") or session.call_id)
            self.by_call[call] = session
        elif kind == "state":
            call = int(message["call"])
            session = self.by_call.get(call)
            if session is not None:
                session.call_state(str(message.get("state")), message.get("code"))
            if message.get("state") == "DISCONNECTED":
                session = self.by_call.pop(call, None)
                if session is not None:
                    self.release(session)
        elif kind == "dtmf":
            session = self.by_call.get(int(message["call"]))
            if session is not None:
                session.digits.put_nowait(str(message["digit"]))
        elif kind == "prompt_done":
            session = self.by_call.get(int(message["call"]))
            if session is not None:
                session.prompt_done.set()
        elif kind == "fatal":
            log.error("media.worker_fatal", worker=self.index, error=message.get("error"))

    async def command(self, cmd: str, **fields: Any) -> None:
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise ConnectionError(f"media worker {self.index} is not running")
        ident = next(self._ids)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        process.stdin.write((json.dumps({"id": ident, "cmd": cmd, **fields}) + "\n").encode())
        try:
            await asyncio.wait_for(future, COMMAND_SECONDS)
        finally:
            self._pending.pop(ident, None)

    def release(self, session: MediaSession) -> None:
        if self.sessions.pop(session.token, None) is not None:
            session.finished()
            if session.worker_call is not None:
                self.by_call.pop(session.worker_call, None)

    def lost(self) -> list[MediaSession]:
        """The process is gone: every session with it ends, pending commands fail."""
        self.ready.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"media worker {self.index} died"))
        self._pending.clear()
        sessions = list(self.sessions.values())
        for session in sessions:
            self.release(session)
        return sessions


class MediaPool:
    def __init__(
        self,
        *,
        size: int,
        host: str,
        sip_port: int,
        rtp_port: int,
        log_dir: Path,
        apps: dict[str, MediaApp],
        on_lost: Callable[[str], object],
    ) -> None:
        self.size = size
        self.host = host
        self.sip_port = sip_port
        self.rtp_port = rtp_port
        self.log_dir = log_dir
        self.apps = apps
        self.on_lost = on_lost  # ends the exchange's side of a call (by the caller's Call-ID)
        self.workers: list[WorkerProcess] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def capacity(self) -> int:
        return CALLS_PER_WORKER * len(self.workers)

    @property
    def in_use(self) -> int:
        return sum(len(worker.sessions) for worker in self.workers)

    async def start(self, ready_timeout: float = READY_SECONDS) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.size):
            sip_port = self.sip_port + index if self.sip_port else free_udp_port(self.host)
            rtp_port = (
                self.rtp_port + index * RTP_PORTS_PER_WORKER
                if self.rtp_port
                else free_udp_block(self.host, RTP_PORTS_PER_WORKER)
            )
            worker = WorkerProcess(self, index, self.host, sip_port, rtp_port)
            self.workers.append(worker)
            self.spawn_task(self._supervise(worker))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ready_timeout):
                await asyncio.gather(*(worker.ready.wait() for worker in self.workers))
        log.info(
            "media.pool_started",
            workers=self.size,
            ready=sum(worker.ready.is_set() for worker in self.workers),
            host=self.host,
        )

    async def _supervise(self, worker: WorkerProcess) -> None:
        delay = RESTART_MIN
        while not self._stopping:
            started = time.monotonic()
            try:
                await worker.spawn()
                await worker.run()
            except Exception:
                log.exception("media.worker_failed", worker=worker.index)
            if self._stopping:
                break
            code = worker.process.returncode if worker.process else None
            lost = worker.lost()
            log.warning(
                "media.worker_died",
                worker=worker.index,
                pid=worker.pid,
                code=code,
                calls_ended=len(lost),
            )
            for session in lost:
                if not session.exchange_done:
                    self.on_lost(session.call_id)
            worker.restarts += 1
            # A worker that keeps dying at start-up is retried ever more slowly.
            delay = RESTART_MIN if time.monotonic() - started > 10 else min(delay * 2, RESTART_MAX)
            await asyncio.sleep(delay)

    def reserve(self, app: str, call_id: str) -> MediaSession | None:
        """A slot on the least loaded live worker, or None when the pool is full."""
        if app not in self.apps:
            raise KeyError(app)
        candidates = [worker for worker in self.workers if worker.free > 0]
        if not candidates:
            return None
        worker = max(candidates, key=lambda w: w.free)
        session = MediaSession(worker, app, call_id)
        worker.sessions[session.token] = session
        loop = asyncio.get_running_loop()
        loop.call_later(ARRIVAL_SECONDS, self._expire_unarrived, session)
        return session

    def reserve_outgoing(self) -> MediaSession | None:
        """A slot for a call a worker places itself (``voip.place_call``); None when full.

        The caller sends the worker's ``call`` command and gives the slot back with
        :meth:`release_unused` if the call never started.
        """
        candidates = [worker for worker in self.workers if worker.free > 0]
        if not candidates:
            return None
        worker = max(candidates, key=lambda w: w.free)
        session = MediaSession(worker, ORIGINATE_APP, "")
        session.outgoing = True
        worker.sessions[session.token] = session
        return session

    @staticmethod
    def release_unused(session: MediaSession) -> None:
        """Give back a slot whose call never started on its worker."""
        if session.worker_call is None:
            session.worker.release(session)

    def _expire_unarrived(self, session: MediaSession) -> None:
        if session.worker_call is None and session.state == "reserved":
            session.worker.release(session)

    def exchange_ended(self, session: MediaSession) -> None:
        """The exchange ended the call: free a slot the worker never used, or make sure."""
        session.exchange_done = True
        if session.worker_call is None:
            session.worker.release(session)
            return
        asyncio.get_running_loop().call_later(LINGER_SECONDS, self._hang_up_lingering, session)

    def _hang_up_lingering(self, session: MediaSession) -> None:
        if not session.ended.is_set():
            self.spawn_task(self._quiet(session.hangup()))

    def start_app(self, session: MediaSession) -> None:
        session.task = self.spawn_task(self._run_app(session))

    async def _run_app(self, session: MediaSession) -> None:
        try:
            await self.apps[session.app](session)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception:
            log.exception("media.app_failed", app=session.app, call_id=session.call_id)
            await self._quiet(session.hangup(500))

    @staticmethod
    async def _quiet(coroutine: Any) -> None:
        with contextlib.suppress(Exception):
            await coroutine

    def spawn_task(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        self._stopping = True
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None and process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.write(b'{"cmd": "quit"}\n')
                    process.stdin.close()
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            try:
                await asyncio.wait_for(process.wait(), 3.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("media.pool_stopped")
