"""Real SIP phones for tests: pjsua2 in its own process per phone, driven from asyncio.

    async with Phone.start("alice", log_dir=tmp_path) as alice, Phone.start("bob") as bob:
        await alice.register("127.0.0.1", sip_port, "1001", "secret")
        call = await alice.call("sip:1002@127.0.0.1:5060")
        incoming = await bob.wait_incoming()
        await incoming.answer()
        await call.wait_state("CONFIRMED")

Each phone is ``support/pjsua_phone.py`` in a subprocess (pjsua2 allows four calls
per process, and one process per phone keeps their SIP stacks truly apart). The
process is always ended when the ``async with`` block exits, even on failure; its
pjsua2 log (with every SIP message) is ``phone.log_path`` and failure messages end
with its tail.
"""

# Waits take a `timeout` argument (ASYNC109) on purpose: on expiry they fail with what
# was awaited and the peer's log, which a bare asyncio.timeout() cannot say.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.events import Event, EventLog, PeerFailed
from support.ports import free_port_block, free_sip_port

PHONE_MAIN = Path(__file__).with_name("pjsua_phone.py")
RTP_PORTS_PER_PHONE = 20
# A recorder's WAV header is written after its port is removed (about 0.3 s in 2.15).
RECORDER_FINALISE_SECONDS = 0.5
# pjsua_call_media_status values, as reported in "media_state" events.
MEDIA_STATUS = {"none": 0, "active": 1, "local_hold": 2, "remote_hold": 3, "error": 4}


@dataclass(frozen=True)
class Registration:
    code: int
    reason: str
    expiration: int
    active: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


class RegistrationFailed(PeerFailed):
    def __init__(self, message: str, registration: Registration) -> None:
        super().__init__(message)
        self.registration = registration


@dataclass(frozen=True)
class CallState:
    state: str  # CALLING, INCOMING, EARLY, CONNECTING, CONFIRMED, DISCONNECTED
    code: int  # the last SIP status code seen on the call
    reason: str


class Call:
    """One call of a phone (outgoing or incoming); its events start at its creation."""

    def __init__(self, phone: Phone, call_id: int, since: int, incoming: Event | None = None):
        self.phone = phone
        self.id = call_id
        self.since = since
        self.incoming = incoming  # the "incoming" event, with the INVITE text in "message"

    def __repr__(self) -> str:
        return f"<Call {self.id} of {self.phone.name}>"

    def _mine(self, event: Event, kind: str) -> bool:
        return event.get("event") == kind and event.get("call") == self.id

    @property
    def states(self) -> list[CallState]:
        return [
            CallState(event["state"], event["code"], event["reason"])
            for event in self.phone.events.events[self.since :]
            if self._mine(event, "call_state")
        ]

    @property
    def state(self) -> CallState | None:
        states = self.states
        return states[-1] if states else None

    async def _command(self, cmd: str, **fields: Any) -> Any:
        return await self.phone.command(cmd, call=self.id, **fields)

    async def wait_state(self, state: str, timeout: float = 10.0) -> CallState:
        """Wait for ``state``; a call that ends first fails the wait with its status."""
        wanted = state.upper()
        event = await self.phone.events.wait(
            lambda e: self._mine(e, "call_state") and e["state"] in (wanted, "DISCONNECTED"),
            timeout,
            f"call {self.id} of {self.phone.name} to reach {wanted}",
            self.since,
        )
        reached = CallState(event["state"], event["code"], event["reason"])
        if reached.state != wanted:
            raise PeerFailed(
                f"call {self.id} of {self.phone.name} ended ({reached.code} {reached.reason}) "
                f"before reaching {wanted}\n{self.phone.log_tail()}"
            )
        return reached

    async def wait_media(self, timeout: float = 10.0) -> None:
        await self.phone.events.wait(
            lambda e: self._mine(e, "media_state") and e["active"],
            timeout,
            f"active media on call {self.id} of {self.phone.name}",
            self.since,
        )

    async def answer(self, code: int = 200) -> None:
        await self._command("answer", code=code)

    async def reject(self, code: int = 486) -> None:
        await self._command("hangup", code=code)

    async def hangup(self) -> None:
        await self._command("hangup")

    async def hold(self) -> None:
        await self._command("hold")

    async def unhold(self) -> None:
        await self._command("unhold")

    async def reinvite(self, *, offer: bool = True) -> None:
        """Refresh the session; ``offer=False`` sends a re-INVITE without SDP."""
        await self._command("reinvite", offer=offer)

    async def wait_media_status(self, status: str, since: int, timeout: float = 10.0) -> None:
        """Wait (from event index ``since``) for the audio stream to reach ``status``:
        active, local_hold or remote_hold (pjsua's view of the last SDP exchange)."""
        wanted = MEDIA_STATUS[status]
        await self.phone.events.wait(
            lambda e: self._mine(e, "media_state") and wanted in e["statuses"],
            timeout,
            f"media {status} on call {self.id} of {self.phone.name}",
            max(since, self.since),
        )

    async def transfer(self, uri: str) -> None:
        """Blind transfer of this call to ``uri`` (REFER, RFC 3515)."""
        await self._command("transfer", uri=uri)

    async def transfer_replaces(self, other: Call) -> None:
        """Attended transfer: the far end of this call replaces ``other`` (RFC 3891)."""
        await self._command("transfer_replaces", other=other.id)

    async def wait_transfer(self, timeout: float = 15.0) -> int:
        """The final status the exchange's NOTIFYs reported for this call's REFER."""
        event = await self.phone.events.wait(
            lambda e: (
                e.get("event") == "transfer_status" and e.get("call") == self.id and e["final"]
            ),
            timeout,
            f"the transfer of call {self.id} of {self.phone.name} to finish",
            self.since,
        )
        return int(event["code"])

    async def send_dtmf(self, digits: str) -> None:
        """RFC 4733 telephone-events in the RTP stream."""
        await self._command("dtmf", digits=digits)

    @property
    def received_digits(self) -> str:
        return "".join(
            event["digit"]
            for event in self.phone.events.events[self.since :]
            if self._mine(event, "dtmf")
        )

    async def wait_digits(self, digits: str, timeout: float = 10.0) -> str:
        await self.phone.events.wait(
            lambda _: self.received_digits.startswith(digits),
            timeout,
            f"DTMF {digits!r} on call {self.id} of {self.phone.name}",
            self.since,
        )
        return self.received_digits

    async def play(self, wav_path: Path | str) -> None:
        """Loop a WAV into the call (from now, or from when its media starts)."""
        await self._command("play", path=str(wav_path))

    async def stop_play(self) -> None:
        await self._command("stop_play")

    async def record(self, wav_path: Path | str) -> None:
        """Record what the far end sends into a WAV (from when media flows)."""
        await self._command("record", path=str(wav_path))

    async def stop_record(self) -> None:
        """Stop recording and return once the WAV is complete on disk."""
        await self._command("stop_record")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)


class Phone:
    """A pjsua2 phone process. Phone-level call methods act on its latest call."""

    def __init__(self, name: str, log_dir: Path, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.sip_port = free_sip_port()
        self.rtp_port = free_port_block(RTP_PORTS_PER_PHONE)
        self.log_path = log_dir / f"phone-{name}.log"
        self.stderr_path = log_dir / f"phone-{name}.stderr"
        self.events = EventLog(self.log_tail)
        self.current: Call | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._incoming_handed_out: set[int] = set()  # id() of "incoming" events given out

    @property
    def uri(self) -> str:
        """Where to call this phone directly, without a server."""
        return f"sip:{self.name}@{self.host}:{self.sip_port}"

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        name: str,
        *,
        log_dir: Path | None = None,
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        auto_ringing: bool = True,
        host: str = "127.0.0.1",
    ) -> AsyncIterator[Phone]:
        """Start the phone process; it is stopped (or killed) when the block exits."""
        folder = log_dir or Path(tempfile.mkdtemp(prefix=f"unicomm-phone-{name}-"))
        phone = cls(name, folder, host)
        try:
            await phone._spawn(list(codecs), auto_ringing)
            yield phone
        finally:
            await phone.stop()

    async def _spawn(self, codecs: list[str], auto_ringing: bool) -> None:
        arguments = [
            str(PHONE_MAIN),
            f"--name={self.name}",
            f"--host={self.host}",
            f"--sip-port={self.sip_port}",
            f"--rtp-port={self.rtp_port}",
            f"--rtp-port-count={RTP_PORTS_PER_PHONE}",
            f"--codecs={','.join(codecs)}",
            f"--log={self.log_path}",
        ]
        if not auto_ringing:
            arguments.append("--no-auto-ringing")
        with self.stderr_path.open("wb") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                *arguments,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        self._reader = asyncio.create_task(self._read(), name=f"phone {self.name} reader")
        await self.events.wait(
            lambda e: e.get("event") in ("ready", "fatal"), 15, f"phone {self.name} to start"
        )
        if fatal := self.events.find(lambda e: e.get("event") == "fatal"):
            raise PeerFailed(f"phone {self.name} failed to start: {fatal}\n{self.log_tail()}")

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            async for line in self._process.stdout:
                message = json.loads(line)
                if "event" in message:
                    self.events.append(message)
                elif (future := self._replies.pop(message.get("id"), None)) and not future.done():
                    future.set_result(message)
        finally:
            self.events.close()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(PeerFailed(f"phone {self.name} exited\n{self.log_tail()}"))

    async def command(self, cmd: str, timeout: float = 10.0, **fields: Any) -> Any:
        """Send one command and return its result; a refused command raises PeerFailed."""
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise PeerFailed(f"phone {self.name} is not running\n{self.log_tail()}")
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        request = {"id": self._next_id, "cmd": cmd, **fields}
        process.stdin.write((json.dumps(request) + "\n").encode())
        await process.stdin.drain()
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise PeerFailed(f"phone {self.name} did not answer {cmd}\n{self.log_tail()}") from None
        if not reply["ok"]:
            raise PeerFailed(f"phone {self.name} refused {request}: {reply['error']}")
        return reply["result"]

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("quit", timeout=2)
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.stderr_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)

    # --- registration ---------------------------------------------------------------------

    async def register(
        self,
        server_host: str,
        server_port: int,
        user: str,
        password: str,
        *,
        transport: str = "udp",
        realm: str = "*",
        domain: str | None = None,
        expires: int = 300,
        timeout: float = 10.0,
        check: bool = True,
        mwi_subscribe: bool = False,
    ) -> Registration:
        """Register and return once the registrar's final answer is known.

        With ``check`` (the default) a failure (401/403 after a wrong password, a
        timeout's 408...) raises ``RegistrationFailed`` carrying the registration.
        """
        if transport not in ("udp", "tcp"):
            raise ValueError("transport is udp or tcp")
        since = self.events.mark()
        await self.command(
            "register",
            host=server_host,
            port=server_port,
            user=user,
            password=password,
            transport=transport,
            realm=realm,
            domain=domain,
            expires=expires,
            mwi_subscribe=mwi_subscribe,
        )
        registration = await self._registration_state(since, timeout, f"{user} to register")
        if check and not registration.ok:
            raise RegistrationFailed(
                f"{self.name}: registration of {user} failed: "
                f"{registration.code} {registration.reason}\n{self.log_tail()}",
                registration,
            )
        return registration

    async def wait_mwi(self, waiting: bool, timeout: float = 10.0, since: int = 0) -> str:
        """The body of the next message-summary NOTIFY saying ``Messages-Waiting`` yes/no."""
        wanted = f"messages-waiting: {'yes' if waiting else 'no'}"
        event = await self.events.wait(
            lambda e: e.get("event") == "mwi" and wanted in e["body"].lower(),
            timeout,
            f"{self.name}: a message-waiting NOTIFY ({wanted})",
            since,
        )
        return str(event["body"])

    async def unregister(self, timeout: float = 10.0) -> Registration:
        since = self.events.mark()
        await self.command("unregister")
        return await self._registration_state(since, timeout, "un-registration")

    async def _registration_state(self, since: int, timeout: float, what: str) -> Registration:
        event = await self.events.wait(
            lambda e: e.get("event") == "reg_state" and e.get("account") == "registered",
            timeout,
            f"{self.name}: {what}",
            since,
        )
        return Registration(event["code"], event["reason"], event["expiration"], event["active"])

    # --- calls ------------------------------------------------------------------------------

    async def call(
        self, uri: str, *, account: str | None = None, headers: dict[str, str] | None = None
    ) -> Call:
        """Place a call: through the registered account if any, else directly.

        ``account`` forces "local" (direct, peer to peer) or "registered".
        """
        since = self.events.mark()
        result = await self.command("call", uri=uri, account=account, headers=headers or {})
        self.current = Call(self, result["call"], since)
        return self.current

    async def wait_incoming(self, timeout: float = 10.0) -> Call:
        """The next incoming call not yet handed out (already ringing with 180)."""
        taken = self._incoming_handed_out
        event = await self.events.wait(
            lambda e: e.get("event") == "incoming" and id(e) not in taken,
            timeout,
            f"an incoming call on {self.name}",
        )
        taken.add(id(event))
        since = self.events.events.index(event)
        self.current = Call(self, event["call"], since, incoming=event)
        return self.current

    def _current(self) -> Call:
        if self.current is None:
            raise PeerFailed(f"phone {self.name} has no call")
        return self.current

    async def answer(self, code: int = 200) -> None:
        await self._current().answer(code)

    async def reject(self, code: int = 486) -> None:
        await self._current().reject(code)

    async def hangup(self) -> None:
        await self._current().hangup()

    async def wait_state(self, state: str, timeout: float = 10.0) -> CallState:
        return await self._current().wait_state(state, timeout)

    async def hold(self) -> None:
        await self._current().hold()

    async def unhold(self) -> None:
        await self._current().unhold()

    async def send_dtmf(self, digits: str) -> None:
        await self._current().send_dtmf(digits)

    async def wait_digits(self, digits: str, timeout: float = 10.0) -> str:
        return await self._current().wait_digits(digits, timeout)

    @property
    def received_digits(self) -> str:
        return self._current().received_digits

    async def play(self, wav_path: Path | str) -> None:
        await self._current().play(wav_path)

    async def record(self, wav_path: Path | str) -> None:
        await self._current().record(wav_path)

    async def stop_record(self) -> None:
        await self._current().stop_record()


async def ended_with(call: Call, within: float = 10.0) -> int:
    """Wait for ``call`` to end and return its last status (487 cancelled, 404, 200...)."""
    state = await call.phone.events.wait(
        lambda e: (
            e.get("event") == "call_state"
            and e.get("call") == call.id
            and e["state"] == "DISCONNECTED"
        ),
        within,
        f"call {call.id} of {call.phone.name} to end",
        call.since,
    )
    return int(state["code"])
