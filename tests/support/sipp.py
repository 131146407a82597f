"""SIPp (Debian ``sip-tester``) scenarios run against a target, with parsed results.

    result = await run_sipp("uac_call", f"127.0.0.1:{port}", users=[("1001", "pw")],
                            service="1002")
    assert result.ok, result.describe()

    async with Sipp.start("uas_answer", service="1002") as callee:   # a listening UAS
        ...  # call callee.port
        result = await callee.wait()

Scenarios live in ``tests/voip/sipp/*.xml``; each documents its CSV fields and
``-key`` keywords. Users go to an injection CSV (``-inf``, field0 = user, field1 =
password, field2 = that user's ``[authentication ...]`` keyword); every run keeps its
statistics (``-trace_stat``), errors, ``<log>`` lines and the message trace in its own
folder, so a failure can show what was on the wire.
"""

# Waits take a `timeout` argument (ASYNC109) on purpose: on expiry they kill SIPp and
# still return its partial result, which a bare asyncio.timeout() cannot do.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.ports import free_port_block, free_sip_port

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "voip" / "sipp"
TRANSPORT_MODES = {"udp": "u1", "tcp": "t1"}  # one socket for all calls, like a phone
# Scenarios that retransmit by hand run with -nr: SIPp's own retransmission handling
# would hide the server's identical second answer and re-send in a loop.
HAND_RETRANSMITTING = ("udp_retransmit", "udp_retransmit_register")


def sipp_binary() -> str:
    binary = shutil.which("sipp")
    if binary is None:
        raise RuntimeError(
            "sipp is not installed: run `make test`, which installs Debian's sip-tester"
        )
    return binary


def scenario_path(scenario: str | Path) -> Path:
    path = Path(scenario)
    if path.suffix != ".xml":
        path = SCENARIO_DIR / f"{scenario}.xml"
    if not path.exists():
        raise FileNotFoundError(f"no SIPp scenario {path}")
    return path


@dataclass
class SippResult:
    scenario: str
    exit_code: int
    successful: int
    failed: int
    statistics: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)  # lines written by <log> actions
    messages: str = ""  # the -trace_msg file: every message sent and received
    errors: str = ""
    screen: str = ""
    work_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """Every call succeeded (SIPp exits 0 only then) and there was at least one."""
        return self.exit_code == 0 and self.failed == 0 and self.successful > 0

    @property
    def final_statuses(self) -> list[int]:
        """Statuses logged by uac_expect_status.xml, one per call."""
        return [int(line.split()[-1]) for line in self.logs if line.startswith("final-status")]

    @property
    def received_messages(self) -> list[str]:
        """The SIP messages received, in order, from the message trace."""
        return _traced_messages(self.messages, "received")

    @property
    def sent_messages(self) -> list[str]:
        return _traced_messages(self.messages, "sent")

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"SIPp {self.scenario}: exit {self.exit_code}, {self.successful} successful, "
            f"{self.failed} failed (files in {self.work_dir})\n"
            f"--- errors ---\n{self.errors[-3000:]}\n"
            f"--- messages (last 6000 chars) ---\n{self.messages[-6000:]}\n"
            f"--- screen (last 3000 chars) ---\n{self.screen[-3000:]}"
        )


_TRACE_HEADER = re.compile(
    r"^-{10,} [^\n]*\n(?P<direction>UDP|TCP|TLS|SCTP) message (?P<verb>received|sent) "
    r"[^\n]*\n\n",
    re.MULTILINE,
)


def _traced_messages(trace: str, verb: str) -> list[str]:
    """Split a -trace_msg file into its messages (header lines removed)."""
    headers = list(_TRACE_HEADER.finditer(trace))
    messages = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(trace)
        if header["verb"] == verb:
            messages.append(trace[header.end() : end].strip("\n") + "\n")
    return messages


def _user_line(user: str, password: str) -> str:
    """One injection CSV line: field0 user, field1 password, field2 the auth keyword.

    SIPp 3.6 does not nest keywords (``[authentication username=[field0] ...]`` is sent
    as text), but it expands a keyword held in an injection field: scenarios answer a
    challenge with ``[field2]``, so every user of a multi-user run has its own password.
    """
    for value in (user, password):
        if any(c in value for c in ";] \n"):
            raise ValueError(f"SIPp cannot carry {value!r} in an injection field")
    return f"{user};{password};[authentication username={user} password={password}]\n"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _first_match(folder: Path, pattern: str) -> Path:
    return next(iter(sorted(folder.glob(pattern))), folder / pattern.replace("*", "none"))


def _parse_statistics(text: str) -> dict[str, str]:
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


class Sipp:
    """One SIPp process: a client against ``target`` or, without target, a listening UAS."""

    def __init__(
        self,
        scenario: str | Path,
        target: str | None = None,
        *,
        users: Iterable[tuple[str, str]] = (("sipp", "sipp"),),
        service: str = "service",
        domain: str | None = None,
        calls: int = 1,
        rate: float | None = None,
        concurrent: int | None = None,
        transport: str = "udp",
        local_port: int | None = None,
        duration_ms: int = 1000,
        keys: dict[str, str] | None = None,
        retransmissions: bool | None = None,
        extra_args: Sequence[str] = (),
        work_dir: Path | None = None,
    ) -> None:
        if transport not in TRANSPORT_MODES:
            raise ValueError(f"transport is one of {sorted(TRANSPORT_MODES)}")
        self.scenario = scenario_path(scenario)
        self.target = target
        self.port = local_port or free_sip_port()
        self.media_port = free_port_block(4)  # SIPp binds audio and video echo ports
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix=f"sipp-{self.scenario.stem}-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.process: asyncio.subprocess.Process | None = None
        self.socket_kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM

        users_csv = self.work_dir / "users.csv"
        users_csv.write_text("SEQUENTIAL\n" + "".join(_user_line(u, p) for u, p in users))
        target_host = (target or "127.0.0.1").rsplit(":", 1)[0]
        all_keys = {
            "domain": domain or target_host,
            "expires": "300",
            "ruri": f"sip:{target or target_host}",
            **(keys or {}),
        }
        self.arguments = [
            *([target] if target else []),
            "-sf", str(self.scenario),
            "-inf", str(users_csv),
            "-s", service,
            "-i", "127.0.0.1",
            "-p", str(self.port),
            "-mp", str(self.media_port),
            "-t", TRANSPORT_MODES[transport],
            "-m", str(calls),
            "-d", str(duration_ms),
            "-aa",  # answer stray INFO/NOTIFY/OPTIONS/UPDATE with 200, as phones do
            "-nostdin",
            "-trace_stat", "-stf", str(self.work_dir / "stats.csv"), "-fd", "1",
            "-trace_err", "-error_file", str(self.work_dir / "errors.log"),
            "-trace_logs", "-log_file", str(self.work_dir / "logs.log"),
            "-trace_msg", "-message_file", str(self.work_dir / "messages.log"),
            "-trace_screen", "-screen_file", str(self.work_dir / "screen.log"),
        ]  # fmt: skip
        for name, value in all_keys.items():
            self.arguments += ["-key", name, value]
        if retransmissions is None:
            retransmissions = self.scenario.stem not in HAND_RETRANSMITTING
        if not retransmissions:
            self.arguments.append("-nr")
        if rate is not None:
            self.arguments += ["-r", f"{rate:g}"]
        if concurrent is not None:
            self.arguments += ["-l", str(concurrent)]
        self.arguments += list(extra_args)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, scenario: str | Path, target: str | None = None, **options: object
    ) -> AsyncIterator[Sipp]:
        """Run SIPp in the background for the block; it is killed if still running."""
        sipp = cls(scenario, target, **options)  # type: ignore[arg-type]
        await sipp.spawn()
        try:
            yield sipp
        finally:
            await sipp.kill()

    async def spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sipp_binary(),
            *self.arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=(self.work_dir / "stdout.log").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.work_dir,
        )
        if self.target is None:
            await self._wait_listening()

    async def _wait_listening(self) -> None:
        # A UAS is ready once its socket is bound; SIPp says nothing, so try to bind.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            with socket.socket(socket.AF_INET, self.socket_kind) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            if self.process is not None and self.process.returncode is not None:
                return
            await asyncio.sleep(0.05)

    async def wait(self, timeout: float = 60.0) -> SippResult:
        """Wait for SIPp to finish its calls (killing it after ``timeout``) and parse."""
        assert self.process is not None, "spawn() first"
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            code = -9
        return self.result(code)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def result(self, exit_code: int) -> SippResult:
        folder = self.work_dir
        statistics = _parse_statistics(_read(folder / "stats.csv"))
        logs = [line.strip() for line in _read(folder / "logs.log").splitlines() if line.strip()]
        return SippResult(
            scenario=self.scenario.stem,
            exit_code=exit_code,
            successful=int(statistics.get("SuccessfulCall(C)", 0) or 0),
            failed=int(statistics.get("FailedCall(C)", 0) or 0),
            statistics=statistics,
            logs=logs,
            messages=_read(folder / "messages.log"),
            errors=_read(folder / "errors.log"),
            screen=_read(folder / "screen.log") + _read(folder / "stdout.log"),
            work_dir=folder,
        )


async def run_sipp(
    scenario: str | Path, target: str, *, timeout: float = 60.0, **options: object
) -> SippResult:
    """Run a client scenario to its end against ``target`` ("host:port")."""
    async with Sipp.start(scenario, target, **options) as sipp:
        return await sipp.wait(timeout)
