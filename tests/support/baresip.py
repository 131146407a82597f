"""baresip (Debian package, 1.0) as a test phone, controlled through its ctrl_tcp module.

    async with Baresip.start("1003", log_dir=tmp_path, tone_hz=440) as phone:
        await phone.register("127.0.0.1", sip_port, "1003", "pw", transport="tcp")
        await phone.dial("sip:1001@127.0.0.1")
        await phone.wait_event("CALL_ESTABLISHED")

Each instance gets a generated config folder (``-f DIR``): SIP listening on a free
loopback port, its own RTP port range, no sound card: the microphone is a WAV file
(``aufile``) or a sine (``ausine``), the speaker a discarding ``aubridge`` device,
and ``sndfile`` writes what was heard to ``recordings/*-dec.wav``. Commands and
events are JSON in netstrings on a ctrl_tcp socket.
"""

# Waits take a `timeout` argument (ASYNC109) on purpose: on expiry they fail with what
# was awaited and baresip's output, which a bare asyncio.timeout() cannot say.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from support.events import Event, EventLog, PeerFailed
from support.ports import free_port_block, free_sip_port

MODULE_DIR = Path("/usr/lib/baresip/modules")
RTP_PORTS = 20


def baresip_binary() -> str:
    binary = shutil.which("baresip")
    if binary is None or not MODULE_DIR.is_dir():
        raise RuntimeError("baresip is not installed: run `make test`, which installs it")
    return binary


class Baresip:
    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        play_wav: Path | None = None,
        tone_hz: int | None = None,
        auto_answer: bool = False,
    ) -> None:
        self.name = name
        self.folder = folder
        self.sip_port = free_sip_port()
        self.control_port = free_sip_port()
        self.rtp_port = free_port_block(RTP_PORTS)
        self.recordings = folder / "recordings"
        self.output_path = folder / "baresip.log"
        self.events = EventLog(self.log_tail)
        self._play_wav = play_wav
        self._tone_hz = tone_hz
        self._auto_answer = auto_answer
        self._accounts: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._replies: asyncio.Queue[Event] = asyncio.Queue()

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.sip_port}"

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        name: str,
        *,
        log_dir: Path | None = None,
        play_wav: Path | None = None,
        tone_hz: int | None = None,
        auto_answer: bool = False,
        accounts: list[str] | None = None,
    ) -> AsyncIterator[Baresip]:
        """Start baresip; ``accounts`` are extra raw lines for its accounts file."""
        folder = (log_dir or Path(tempfile.mkdtemp(prefix="unicomm-baresip-"))) / f"baresip-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        phone = cls(name, folder, play_wav=play_wav, tone_hz=tone_hz, auto_answer=auto_answer)
        phone._accounts = list(accounts or [])
        try:
            await phone._spawn()
            yield phone
        finally:
            await phone.stop()

    # --- configuration ----------------------------------------------------------------------

    def _write_config(self) -> None:
        self.recordings.mkdir(exist_ok=True)
        if self._play_wav is not None:
            source = f"aufile,{self._play_wav}"
        else:
            source = f"ausine,{self._tone_hz or 440}"
        answer = "auto" if self._auto_answer else "manual"
        lines = [
            f"sip_listen\t\t127.0.0.1:{self.sip_port}",
            f"ctrl_tcp_listen\t\t127.0.0.1:{self.control_port}",
            f"rtp_ports\t\t{self.rtp_port}-{self.rtp_port + RTP_PORTS - 1}",
            f"audio_source\t\t{source}",
            "audio_player\t\taubridge,nowhere",  # no sound card: discard what is heard
            "audio_alert\t\taubridge,nowhere",
            # ausine only makes 48 kHz stereo; baresip converts to the codec (8 kHz mono).
            *(["ausrc_srate\t\t48000", "ausrc_channels\t\t2"] if self._play_wav is None else []),
            "audio_channels\t\t1",
            f"snd_path\t\t{self.recordings}",
            f"answermode\t\t{answer}",
            "call_max_calls\t\t4",
            f"module_path\t\t{MODULE_DIR}",
            "module\t\t\tg711.so",
            "module\t\t\taufile.so",
            "module\t\t\tausine.so",
            "module\t\t\taubridge.so",
            "module\t\t\tsndfile.so",
            "module_app\t\taccount.so",
            "module_app\t\tctrl_tcp.so",
            "module_app\t\tmenu.so",  # the commands: dial, accept, hangup, reginfo...
        ]
        (self.folder / "config").write_text("\n".join(lines) + "\n")
        # The local account lets it call and be called directly, without registering.
        local = f"<sip:{self.name}@127.0.0.1:{self.sip_port}>;regint=0"
        (self.folder / "accounts").write_text("\n".join([local, *self._accounts]) + "\n")
        (self.folder / "contacts").write_text("")

    async def _spawn(self) -> None:
        self._write_config()
        with self.output_path.open("wb") as output:
            self._process = await asyncio.create_subprocess_exec(
                baresip_binary(),
                "-f",
                str(self.folder),
                "-v",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.control_port)
                break
            except OSError:
                if self._process.returncode is not None or loop.time() > deadline:
                    message = f"baresip {self.name} did not start\n{self.log_tail()}"
                    raise PeerFailed(message) from None
                await asyncio.sleep(0.1)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                length = await reader.readuntil(b":")
                payload = await reader.readexactly(int(length[:-1]) + 1)  # with the ","
                message: Event = json.loads(payload[:-1])
                if message.get("response"):
                    await self._replies.put(message)
                elif message.get("event"):
                    self.events.append(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.events.close()

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("quit", timeout=2)
            try:
                await asyncio.wait_for(process.wait(), 3)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    def log_tail(self, lines: int = 60) -> str:
        if not self.output_path.exists():
            return ""
        text = self.output_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.output_path} (last {lines} lines) ---\n" + "\n".join(text)

    # --- control ---------------------------------------------------------------------------

    async def command(self, command: str, params: str = "", timeout: float = 5.0) -> Any:
        """Run a baresip (menu) command; returns its textual answer."""
        if self._writer is None:
            raise PeerFailed(f"baresip {self.name} is not running")
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()
        try:
            reply = await asyncio.wait_for(self._replies.get(), timeout)
        except TimeoutError:
            message = f"baresip {self.name}: no answer to {command}\n{self.log_tail()}"
            raise PeerFailed(message) from None
        if not reply.get("ok", False):
            raise PeerFailed(f"baresip {self.name} refused {command} {params}: {reply}")
        return reply.get("data")

    async def wait_event(self, kind: str, timeout: float = 10.0, since: int = 0) -> Event:
        """Wait for a ua event by type, e.g. REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED."""
        return await self.events.wait(
            lambda e: e.get("type") == kind, timeout, f"baresip {self.name}: {kind}", since
        )

    async def register(
        self,
        server_host: str,
        server_port: int,
        user: str,
        password: str,
        *,
        transport: str = "udp",
        domain: str | None = None,
        expires: int = 300,
        timeout: float = 10.0,
    ) -> Event:
        """Add an account that registers; returns the REGISTER_OK event, raises on failure."""
        suffix = ";transport=tcp" if transport == "tcp" else ""
        account = (
            f"<sip:{user}@{domain or server_host}{suffix}>;auth_pass={password}"
            f';outbound="sip:{server_host}:{server_port}{suffix}";regint={expires}'
        )
        since = self.events.mark()
        await self.command("uanew", account)
        event = await self.events.wait(
            lambda e: e.get("type") in ("REGISTER_OK", "REGISTER_FAIL"),
            timeout,
            f"baresip {self.name}: registration of {user}",
            since,
        )
        if event["type"] != "REGISTER_OK":
            raise PeerFailed(f"baresip {self.name}: {event}\n{self.log_tail()}")
        # Calls leave from the current account, which is the local one until told:
        # make the registered account current so dial() goes through the registrar.
        await self.command("uafind", f"sip:{user}@{domain or server_host}")
        return event

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def answer(self) -> None:
        await self.command("accept")

    async def hangup(self) -> None:
        await self.command("hangup")

    def recordings_heard(self) -> list[Path]:
        """WAVs of what the far end sent (written by sndfile when a call ends)."""
        return sorted(self.recordings.glob("*-dec.wav"))
