"""SIP benchmark: unicomm against Kamailio, SIPp on both sides, one run, loopback only.

    .venv/bin/python bench/sip.py            (or `make bench`)

1. Registrations: unicomm (``unicomm serve``, production settings, log level WARNING,
   a temporary SQLite database with the phones seeded) holds ``--phones`` phones that
   register with digest auth and re-register every ``--reregister`` seconds (one SIPp
   register scenario fed from an injection CSV, at a steady rate, two rounds). Measured:
   bindings held at the end, RSS growth per registration, CPU time per REGISTER.
2. Calls: a SIPp callee registers and answers; a SIPp caller (answering the 407 digest
   challenge) calls it at stepped rates, ``--step`` seconds each, through unicomm and
   then through Kamailio (bench/kamailio.cfg: a stateful relay with digest auth on
   REGISTER and INVITE, location in memory, record-route, 2 children). A step passes
   with fewer than 0.1% failed calls (calls never completed count as failed); the
   stepping stops after two failing steps. p99 is the INVITE (with credentials) to 200
   time from SIPp's -trace_rtt.

Everything runs on 127.0.0.1 and stops by itself (each SIPp run and the whole bench
are bounded); the table at the end gives the unicomm/Kamailio ratio.
"""

# A benchmark driver, not the server: its few file operations and the servers it starts
# with Popen happen outside the timed steps; SIPp runs take a `timeout` so that a
# stuck run is killed and still read (ASYNC109).
# ruff: noqa: ASYNC109, ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.ports import free_port_block, free_sip_port  # noqa: E402

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "sipp"
PASSWORD = "secret-pw-1"
REALM = "unicomm"
CALLER, CALLEE = "1001", "2000"
FIRST_PHONE = 3000
RATES = (100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500, 1800, 2000)
FAILURE_LIMIT = 0.001  # a step passes under 0.1% failed calls
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- processes ------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """The process and all its descendants (Kamailio forks its workers)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            pids.append(child)
            frontier.append(child)
    return pids


def cpu_seconds(pid: int) -> float:
    total = 0
    for each in tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (statm's second field, in pages)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def sipp_binary() -> str:
    binary = shutil.which("sipp")
    if binary is None:
        sys.exit("sipp is not installed: run `make bench` (Debian's sip-tester)")
    return binary


def options_ping(port: int, timeout: float = 30.0) -> None:
    """Wait until a SIP server answers OPTIONS on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.3)
        local = sock.getsockname()[1]
        while time.monotonic() < deadline:
            message = (
                f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{time.monotonic_ns()}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=1\r\n"
                "To: <sip:ping@127.0.0.1>\r\n"
                f"Call-ID: ping{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(message.encode(), ("127.0.0.1", port))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            if data.startswith(b"SIP/2.0 "):
                return
    raise RuntimeError(f"no SIP server answering on 127.0.0.1:{port}")


@dataclass
class SippRun:
    attempted: int
    created: int
    successful: int
    failed: int
    retransmissions: int
    rtts: list[float] = field(default_factory=list)
    exit_code: int = 0

    @property
    def lost(self) -> int:
        """Calls that were due but did not succeed (failed, unfinished or never started)."""
        return max(self.attempted - self.successful, self.failed)

    @property
    def failure_rate(self) -> float:
        return self.lost / self.attempted if self.attempted else 1.0

    def p(self, fraction: float) -> float | None:
        if not self.rtts:
            return None
        ordered = sorted(self.rtts)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _statistics(path: Path) -> dict[str, str]:
    text = path.read_text(errors="replace") if path.exists() else ""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _rtts(folder: Path) -> list[float]:
    values: list[float] = []
    for path in folder.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                with contextlib.suppress(ValueError):
                    values.append(float(parts[1]))
    return values


async def sipp(
    folder: Path,
    scenario: str,
    target: str | None,
    *,
    port: int,
    args: list[str],
    calls: int = 0,
    timeout: float = 60.0,
) -> SippRun:
    """Run one SIPp client to its end (killed after ``timeout``) and read its statistics."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sipp_binary(),
        *([target] if target else []),
        "-sf", str(SCENARIOS / f"{scenario}.xml"),
        "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port_block(4)),
        "-nostdin",
        "-default_behaviors", "all,-abortunexp",
        "-trace_stat", "-stf", str(folder / "stats.csv"), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(folder / "errors.log"),
        "-timeout_error", "-timeout", f"{int(timeout)}s",
        *args,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=(folder / "stdout.log").open("wb"),
        stderr=asyncio.subprocess.STDOUT,
        cwd=folder,
    )
    try:
        code = await asyncio.wait_for(process.wait(), timeout + 10)
    except TimeoutError:
        process.kill()
        code = await process.wait()
    stats = _statistics(folder / "stats.csv")

    def number(name: str) -> int:
        return int(stats.get(name, 0) or 0)

    return SippRun(
        attempted=calls,
        created=number("TotalCallCreated"),
        successful=number("SuccessfulCall(C)"),
        failed=number("FailedCall(C)"),
        retransmissions=number("Retransmissions(C)"),
        rtts=_rtts(folder),
        exit_code=code,
    )


async def start_callee(folder: Path, port: int) -> asyncio.subprocess.Process:
    folder.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        sipp_binary(),
        "-sf", str(SCENARIOS / "callee.xml"),
        "-s", CALLEE, "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port_block(4)),
        "-nostdin", "-default_behaviors", "all,-abortunexp",
        "-trace_err", "-error_file", str(folder / "errors.log"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=(folder / "stdout.log").open("wb"),
        stderr=asyncio.subprocess.STDOUT,
        cwd=folder,
    )  # fmt: skip


def write_users(path: Path, numbers: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "SEQUENTIAL\n"
        + "".join(f"{n};[authentication username={n} password={PASSWORD}]\n" for n in numbers)
    )
    return path


async def register(folder: Path, server_port: int, numbers: list[str], port: int) -> SippRun:
    users = write_users(folder / "users.csv", numbers)
    args = ["-inf", str(users), "-key", "domain", REALM, "-key", "expires", "3600"]
    args += ["-m", str(len(numbers)), "-r", "50"]
    return await sipp(
        folder,
        "register",
        f"127.0.0.1:{server_port}",
        port=port,
        args=args,
        calls=len(numbers),
        timeout=30,
    )


# -- the servers -----------------------------------------------------------------------


class Server:
    name = ""
    process: subprocess.Popen[bytes] | None = None
    port: int

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Under py-spy, the server is its child: py-spy writes its profile when it ends.
            for pid in tree(self.process.pid)[1:] or [self.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def seed(database_url: str, phones: int) -> None:
    from core import migrations
    from core.db import Database
    from core.models import Department
    from voip.models import ClassOfService
    from voip.service import new_extension

    await migrations.upgrade_async(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            department = Department(code="BENCH", name="Bench")
            session.add(department)
            await session.flush()
            numbers = [CALLER, CALLEE] + [str(FIRST_PHONE + i) for i in range(phones)]
            session.add_all(
                new_extension(
                    number=number,
                    name=f"Phone {number}",
                    password=PASSWORD,
                    realm=REALM,
                    department_id=department.id,
                    class_of_service=ClassOfService.INTERNAL,
                )
                for number in numbers
            )
    finally:
        await db.close()


class Unicomm(Server):
    name = "unicomm"

    def __init__(self, folder: Path, extra: dict[str, str], profile: str | None = None) -> None:
        self.folder = folder
        self.profile = profile
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_port()
        http_port = free_port_block(1, udp=False, tcp=True)
        settings = {
            "data_dir": str(folder / "data"),
            "database_url": f"sqlite+aiosqlite:///{folder / 'unicomm.db'}",
            "http_host": "127.0.0.1",
            "http_port": http_port,
            "sip_host": "127.0.0.1",
            "sip_port": self.port,
            "sip_tls_port": 0,
            "sip_realm": REALM,
            "log_level": "WARNING",
            # All the bench's phones share one address (as behind an SBC): the per-source
            # flood limit is meant for single phones, so it is raised out of the way.
            "sip_rate_limit": 1_000_000,
            **extra,
        }
        lines = ["[unicomm]"]
        for key, value in settings.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        self.config = folder / "unicomm.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.database_url = settings["database_url"]

    async def start(self, phones: int) -> None:
        await seed(str(self.database_url), phones)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNICOMM_")}
        command = [str(Path(sys.executable).parent / "unicomm"), "--config", str(self.config)]
        if self.profile:  # py-spy (pip install py-spy) samples the server while it works
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            command = [spy, "record", "-r", "200", "-f", "raw", "-o", self.profile,
                       "--", *command]  # fmt: skip
        self.process = subprocess.Popen(
            [*command, "serve"],
            stdout=(self.folder / "unicomm.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        await asyncio.to_thread(options_ping, self.port, 60.0)

    async def bindings(self) -> int:
        from sqlalchemy import func, select

        from core.db import Database
        from voip.models import Binding

        db = Database(str(self.database_url))
        try:
            async with db.session() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(Binding)
                    .where(Binding.expires_at > func.datetime("now"))
                )
        finally:
            await db.close()
        return int(count or 0)


class Kamailio(Server):
    name = "kamailio"

    def __init__(self, folder: Path, defines: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.port = free_sip_port()
        self.defines = defines  # -A preprocessor defines of kamailio.cfg (WITH_RTPENGINE)

    async def start(self, phones: int) -> None:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(binary).exists():
            sys.exit("kamailio is not installed: run `make bench` (Debian's kamailio)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary, "-DD", "-E",
                "-f", str(HERE / "kamailio.cfg"),
                "-l", f"udp:127.0.0.1:{self.port}",
                "-m", "256", "-M", "16",
                "-w", str(self.folder), "-Y", str(self.folder),
                "-P", str(self.folder / "kamailio.pid"),
                *(arg for define in self.defines for arg in ("-A", define)),
            ],
            stdout=(self.folder / "kamailio.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        await asyncio.to_thread(options_ping, self.port, 20.0)


# -- the phases ------------------------------------------------------------------------


@dataclass
class Step:
    rate: int
    run: SippRun
    cpu: float  # the server's CPU use during the step, in cores

    @property
    def passed(self) -> bool:
        return self.run.failure_rate < FAILURE_LIMIT


async def call_steps(
    server: Server, folder: Path, rates: list[int], step: float, hold_ms: int, deadline: float
) -> list[Step]:
    callee_port = free_sip_port()
    registered = await register(folder / "callee-register", server.port, [CALLEE], callee_port)
    if registered.successful != 1:
        raise RuntimeError(f"{server.name}: the callee could not register ({folder})")
    callee = await start_callee(folder / "callee", callee_port)
    caller_port = free_sip_port()
    steps: list[Step] = []
    failing = 0
    try:
        await asyncio.sleep(0.5)
        for rate in rates:
            if time.monotonic() + step + 15 > deadline:
                print(f"  {server.name}: out of time, stopping at {rate} calls/s", flush=True)
                break
            calls = int(rate * step)
            before = cpu_seconds(server.process.pid)
            started = time.monotonic()
            run = await sipp(
                folder / f"calls-{rate}",
                "caller",
                f"127.0.0.1:{server.port}",
                port=caller_port,
                calls=calls,
                timeout=step + 20,
                args=[
                    "-s", CALLEE, "-key", "domain", REALM, "-key", "caller", CALLER,
                    "-au", CALLER, "-ap", PASSWORD,
                    "-r", str(rate), "-m", str(calls), "-l", str(rate * 10),
                    "-d", str(hold_ms), "-recv_timeout", "10000",
                ],
            )  # fmt: skip
            cpu = (cpu_seconds(server.process.pid) - before) / (time.monotonic() - started)
            result = Step(rate, run, cpu)
            steps.append(result)
            p99 = run.p(0.99)
            print(
                f"  {server.name:8} {rate:5} calls/s: {run.successful}/{calls} ok, "
                f"{run.failure_rate:.3%} failed, {run.retransmissions} retransmissions, "
                f"p99 {p99 if p99 is not None else '-'} ms, server CPU {cpu:.2f} cores "
                f"({1000 * cpu / rate:.2f} ms/call) "
                f"{'PASS' if result.passed else 'FAIL'}",
                flush=True,
            )
            failing = 0 if result.passed else failing + 1
            if failing >= 2 or server.process.poll() is not None:
                break
            await asyncio.sleep(2.5)  # the callee's timewait, retransmissions settle
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
    return steps


def best(steps: list[Step]) -> Step | None:
    """The highest passing rate below the first failing step."""
    found = None
    for each in steps:
        if not each.passed:
            break
        found = each
    return found


@dataclass
class Registrations:
    phones: int
    registrations: int
    successful: int
    held: int
    rss_before: int
    rss_after: int
    cpu: float
    seconds: float
    p99: float | None

    @property
    def bytes_per_phone(self) -> float:
        return (self.rss_after - self.rss_before) / max(1, self.held)

    @property
    def cpu_ms_per_register(self) -> float:
        return 1000 * self.cpu / max(1, self.successful)


async def registrations(
    server: Unicomm, folder: Path, phones: int, period: float, rounds: int
) -> Registrations:
    numbers = [str(FIRST_PHONE + i) for i in range(phones)]
    users = write_users(folder / "phones.csv", numbers)
    rate = phones / period
    total = phones * rounds
    pid = server.process.pid
    rss_before, cpu_before, started = rss_bytes(pid), cpu_seconds(pid), time.monotonic()
    print(
        f"  {phones} phones, {rate:.1f} REGISTER/s, {rounds} rounds of {period:g} s "
        f"(RSS before {rss_before / 2**20:.1f} MiB)",
        flush=True,
    )
    run = await sipp(
        folder,
        "register",
        f"127.0.0.1:{server.port}",
        port=free_sip_port(),
        calls=total,
        timeout=period * rounds + 30,
        args=[
            "-inf", str(users), "-key", "domain", REALM, "-key", "expires", str(int(period * 2)),
            "-r", f"{rate:.3f}", "-m", str(total), "-l", str(phones),
        ],
    )  # fmt: skip
    seconds = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    await asyncio.sleep(1)
    held = await server.bindings()
    return Registrations(
        phones=phones,
        registrations=total,
        successful=run.successful,
        held=held,
        rss_before=rss_before,
        rss_after=rss_bytes(pid),
        cpu=cpu,
        seconds=seconds,
        p99=run.p(0.99),
    )


# -- main ------------------------------------------------------------------------------


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fmt_best(step: Step | None) -> str:
    if step is None:
        return "none passed"
    p99 = step.run.p(0.99)
    return f"{step.rate} calls/s, p99 {p99:g} ms" if p99 is not None else f"{step.rate} calls/s"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=2000, help="registered phones held")
    parser.add_argument("--reregister", type=float, default=60.0, help="re-registration period")
    parser.add_argument("--rounds", type=int, default=2, help="registration rounds")
    parser.add_argument("--step", type=float, default=6.0, help="seconds per call rate")
    parser.add_argument("--hold", type=int, default=500, help="call duration, ms")
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="call rates to step")
    parser.add_argument("--only", choices=("unicomm", "kamailio"), help="one server only")
    parser.add_argument("--no-registrations", action="store_true")
    parser.add_argument("--budget", type=float, default=560.0, help="seconds for the whole run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra unicomm setting, e.g. sip_rate_limit=300")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--profile", metavar="FILE", help="py-spy raw profile of unicomm")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    deadline = time.monotonic() + args.budget
    work = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    extra = dict(item.split("=", 1) for item in args.set)
    print(f"load average at start: {load()} (work folder {work})", flush=True)
    results: dict[str, Any] = {}
    try:
        if args.only != "kamailio":
            unicomm = Unicomm(work / "unicomm", extra, args.profile)
            try:
                await unicomm.start(0 if args.no_registrations else args.phones)
                print(f"unicomm on udp 127.0.0.1:{unicomm.port}", flush=True)
                if not args.no_registrations:
                    results["registrations"] = await registrations(
                        unicomm, work / "unicomm-reg", args.phones, args.reregister, args.rounds
                    )
                results["unicomm"] = await call_steps(
                    unicomm, work / "unicomm-calls", rates, args.step, args.hold, deadline
                )
            finally:
                unicomm.stop()
        if args.only != "unicomm":
            kamailio = Kamailio(work / "kamailio")
            try:
                await kamailio.start(0)
                print(f"kamailio on udp 127.0.0.1:{kamailio.port}", flush=True)
                results["kamailio"] = await call_steps(
                    kamailio, work / "kamailio-calls", rates, args.step, args.hold, deadline
                )
            finally:
                kamailio.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nload average at end: {load()}")
    print("\n| server | calls/s at <0.1% failures | p99 INVITE->200 | server CPU (cores) |")
    print("|---|---|---|---|")
    chosen: dict[str, Step | None] = {}
    for name in ("unicomm", "kamailio"):
        if name in results:
            step = chosen[name] = best(results[name])
            cpu = f"{step.cpu:.2f}" if step else "-"
            p99 = step.run.p(0.99) if step else None
            print(f"| {name} | {step.rate if step else 0} | {p99 if p99 is not None else '-'} ms"
                  f" | {cpu} |")  # fmt: skip
    u, k = chosen.get("unicomm"), chosen.get("kamailio")
    if u and k:
        print(f"\nratio unicomm/Kamailio: {u.rate / k.rate:.2f} ({fmt_best(u)} vs {fmt_best(k)})")
        if k is results["kamailio"][-1]:
            print(
                "(Kamailio passed every step: its real limit is higher, the ratio an upper bound)"
            )
    reg = results.get("registrations")
    if reg is not None:
        print(
            f"\nregistrations: {reg.held} of {reg.phones} phones held after "
            f"{reg.successful}/{reg.registrations} REGISTERs in {reg.seconds:.0f} s; "
            f"RSS {reg.rss_before / 2**20:.1f} -> {reg.rss_after / 2**20:.1f} MiB = "
            f"{reg.bytes_per_phone / 1024:.2f} KiB per registration; CPU "
            f"{reg.cpu_ms_per_register:.2f} ms per REGISTER exchange "
            f"({reg.cpu / reg.seconds:.1%} of a core); p99 {reg.p99} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
