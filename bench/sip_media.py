"""SIP media benchmark: anchored G.711 calls (unicomm vs Kamailio + rtpengine) and media workers.

    .venv/bin/python bench/sip_media.py      (`make bench` runs it after bench/sip.py)

1. Anchored calls: a SIPp phone (bench/sipp/media_caller.xml, answering the 407) calls
   an outside number; the SIPp callee (bench/sipp/media_callee.xml) answers with a port
   of bench/rtp_load.py --echo per call, which echoes every packet to its sender (not
   SIPp's -rtp_echo: one socket for all calls, whose buffer overflows and would count as
   the relay's loss). Through unicomm the callee is the carrier: the trunk
   (``voip_trunk_host``, no registration, as a trunk authenticated by its address), so
   the call is relayed by voip/rtp_relay.py as every trunk call is (voip/sdp_anchor.py
   rewrites both SDPs). Through the anchor, Kamailio (bench/kamailio.cfg with
   ``-A WITH_RTPENGINE``: the same stateful relay with digest auth, plus
   ``rtpengine_manage``) and Debian's rtpengine in userspace (``--table=-1``, no
   kernel module), the callee registered under the dialled number. Each call's RTP is
   bench/rtp_load.py's: 20 ms PCMU packets from a port of its own for the call's hold
   time (less 1.5 s, so no packet is in flight at the BYE), counted when they come back
   from the echo (round trips timed). Steps of ``--calls`` concurrent calls (set up at
   ``calls/--ramp`` calls/s, each held ``--hold`` s); a step passes when every call is answered and
   fewer than 0.1% of the packets are lost (sent by the phone, not back from the echo
   through the relay both ways); the last column of the table also asks for a median
   round trip of at most 50 ms (the relay keeps pace, no queue). What the load
   generator loses itself is counted apart, and a step where it did is marked as its
   limit. Stepping stops at the first failing step. CPU is the
   server's during the plateau (every call up), in cores: unicomm's process; Kamailio's
   processes plus rtpengine's.
2. Media workers (unicomm only: voip/media_engine, pjsua2, four calls per worker): for
   each ``--pools`` size, ``UNICOMM_VOIP_MEDIA_WORKERS``-style ``voip_media_workers=N``
   and 1.5x the pool's capacity of SIPp callers at once, each held ``--session-hold`` s:
   the IVR (menu 700, an espeak-ng greeting) and voicemail (extension 2000, no phone
   registered: greeting, beep, the caller's tone recorded). Counted: sessions answered,
   refused busy (486), neither (hung: must be 0); whether the prompt reached the caller
   (RTP received from the worker, and frames that are not silence); messages filed;
   server CPU (main process and workers) per session during the plateau.

Everything runs on 127.0.0.1, SIPp runs are bounded, and the whole run stops after
``--budget`` seconds at the latest; the load average is printed at the start and end.
"""

# A benchmark driver, not the server (see bench/sip.py).
# ruff: noqa: ASYNC109, ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sip import (  # noqa: E402  (bench/sip.py: its servers, SIPp runner and helpers)
    CALLEE,
    CALLER,
    PASSWORD,
    REALM,
    Kamailio,
    Server,
    Unicomm,
    cpu_seconds,
    free_port_block,
    free_sip_port,
    load,
    register,
    sipp,
)

STEPS = (50, 100, 200, 400, 800)
POOLS = (1, 2, 4)
LOSS_LIMIT = 0.001  # a step passes at no more than 0.1% of the packets lost
OUTSIDE = "088880001"  # 0 for an outside line, then a local number: through the trunk
TRUNK_CALLER = "1500"  # an extension allowed to call out (class of service national)
IVR_NUMBER = "700"
VOICEMAIL_NUMBER = CALLEE  # an extension with voicemail on (the default) and no phone
CALLS_PER_WORKER = 4  # voip/media_engine/pool.py: the pjsua2 wheels' limit
GENERATOR_LATE = 0.5  # rtp_load sent a packet this late (s): its own process was starved
PACE_MS = 50.0  # a median round trip above this: the relay is queueing, not keeping pace


# -- the RTP side of the phones -----------------------------------------------------------


class RtpLoad:
    """bench/rtp_load.py in its own process: the phones' media, or (``echo``) the far end's."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.process: asyncio.subprocess.Process | None = None
        self.ports: list[int] = []

    async def start(self, count: int) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "rtp_load.py"), "--ports", str(count),
            *(["--echo"] if self.echo else []),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.ports = json.loads(await self._line(30))["ports"]

    async def _line(self, timeout: float) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("bench/rtp_load.py ended")
        return line

    def _send(self, **command: Any) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())

    def follow(self, log: Path | None, send_seconds: float, *, voiced: bool = False) -> None:
        self._send(cmd="follow", log=str(log or ""), send_seconds=send_seconds, voiced=voiced)

    async def report(self, settle: float = 1.0) -> dict[str, Any]:
        self._send(cmd="report", settle=settle)
        return dict(json.loads(await self._line(120)))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(Exception):
                self._send(cmd="quit")
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def injection(folder: Path, ports: list[int]) -> Path:
    """SIPp's injection file: one RTP port of rtp_load per call (field0)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ports.csv"
    path.write_text("SEQUENTIAL\n" + "".join(f"{port}\n" for port in ports))
    return path


async def call_out(
    folder: Path,
    server_port: int,
    number: str,
    caller: str,
    rtp: RtpLoad,
    *,
    calls: int,
    rate: float,
    hold: float,
    voiced: bool = False,
) -> Any:
    """``calls`` SIPp calls with rtp_load's media; SIPp's result (sip.py's SippRun)."""
    log = folder / "caller-media.log"
    rtp.follow(log, max(0.5, hold - 1.5), voiced=voiced)
    return await sipp(
        folder,
        "media_caller",
        f"127.0.0.1:{server_port}",
        port=free_sip_port(),
        calls=calls,
        timeout=calls / rate + hold + 30,
        args=[
            "-s", number, "-key", "domain", REALM, "-key", "caller", caller,
            "-au", caller, "-ap", PASSWORD,
            "-inf", str(injection(folder, rtp.ports[:calls])),
            "-r", f"{rate:g}", "-m", str(calls), "-l", str(calls),
            "-d", str(int(hold * 1000)), "-recv_timeout", "10000",
            "-trace_logs", "-log_file", str(log),
        ],
    )  # fmt: skip


class Plateau:
    """CPU of some processes between two moments of a step (every call up), in cores."""

    def __init__(self, clocks: dict[str, Callable[[], float]]) -> None:
        self.clocks = clocks  # name -> CPU seconds used so far
        self.cores: dict[str, float] = {}

    async def measure(self, start: float, end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        before = {name: clock() for name, clock in self.clocks.items()}
        began = time.monotonic()
        await asyncio.sleep(max(0.5, end - began))
        seconds = time.monotonic() - began
        for name, clock in self.clocks.items():
            self.cores[name] = (clock() - before[name]) / seconds


def tree_clock(pid: int) -> Callable[[], float]:
    """CPU seconds of a process and its children (bench/sip.py's cpu_seconds)."""
    return lambda: cpu_seconds(pid)


# -- 1. anchored calls ------------------------------------------------------------------------


class Rtpengine(Server):
    """Debian's rtpengine-daemon, userspace forwarding only (no kernel module here)."""

    name = "rtpengine"

    def __init__(self, folder: Path, threads: int) -> None:
        self.folder = folder
        self.threads = threads
        self.port = free_port_block(1)  # the ng control protocol, for Kamailio

    async def start(self) -> None:
        binary = shutil.which("rtpengine") or "/usr/bin/rtpengine"
        if not Path(binary).exists():
            sys.exit("rtpengine is not installed: run `make bench` (Debian's rtpengine-daemon)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary, "--config-file=none", "--foreground", "--log-stderr", "--log-level=4",
                "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{self.port}",
                "--port-min=40000", "--port-max=49999", f"--num-threads={self.threads}",
                f"--pidfile={self.folder / 'rtpengine.pid'}",
            ],
            stdout=(self.folder / "rtpengine.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        await asyncio.sleep(1.0)
        if self.process.poll() is not None:
            raise RuntimeError(f"rtpengine exited at once: see {self.folder / 'rtpengine.log'}")


@dataclass
class MediaStep:
    calls: int
    answered: int
    sent: int
    received: int
    worst_call_loss: float | None
    cores: dict[str, float]
    load_generator: float  # rtp_load's CPU over the step, cores
    late_max: float  # the most a packet of rtp_load was sent late, seconds
    sipp_failed: int
    echoed: int  # packets the far end got (and sent back)
    rtt_ms: dict[str, float] | None  # round trips of the echoed packets: p50, p99, p999, max
    harness_drops: int  # dropped at the phones' and the far end's own sockets, or stale there
    far_wait_ms: dict[str, float] | None  # how long packets waited for the far end to echo

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0

    @property
    def passed(self) -> bool:
        return self.answered == self.calls and self.sent > 0 and self.loss <= LOSS_LIMIT

    @property
    def cpu(self) -> float:
        return sum(self.cores.values())

    @property
    def keeping_pace(self) -> bool:
        """Passed, and the median round trip shows no backlog in the relay (<= 50 ms)."""
        return self.passed and self.rtt_ms is not None and self.rtt_ms["p50"] <= PACE_MS

    @property
    def generator_limited(self) -> bool:
        """The phones or the far end dropped packets themselves: their limit, not the server's."""
        return self.harness_drops > 0


async def anchored_steps(
    name: str,
    server_port: int,
    callee_port: int,
    caller: str,
    clocks: dict[str, Callable[[], float]],
    rtp: RtpLoad,
    far: RtpLoad,
    folder: Path,
    args: argparse.Namespace,
    deadline: float,
) -> list[MediaStep]:
    steps: list[MediaStep] = []
    for calls in args.calls:
        rate = max(10.0, calls / args.ramp)
        ramp = calls / rate
        if time.monotonic() + ramp + args.hold + 15 > deadline:
            print(f"  {name}: out of time, stopping before {calls} calls", flush=True)
            break
        step_folder = folder / f"calls-{calls}"
        # The callee (the carrier, for unicomm) answers; the far end echoes each call's RTP.
        far.follow(None, 0.0)
        media = injection(step_folder / "callee", far.ports[:calls])
        callee = asyncio.create_task(
            sipp(
                step_folder / "callee",
                "media_callee",
                None,
                port=callee_port,
                calls=calls,
                timeout=ramp + args.hold + 30,
                args=["-s", OUTSIDE, "-m", str(calls), "-inf", str(media)],
            )
        )
        await asyncio.sleep(0.5)
        started = time.monotonic()
        plateau = Plateau(clocks)
        measuring = asyncio.create_task(
            plateau.measure(started + ramp + 1.0, started + args.hold - 0.5)
        )
        run = await call_out(
            step_folder, server_port, OUTSIDE, caller, rtp,
            calls=calls, rate=rate, hold=args.hold,
        )  # fmt: skip
        counts = await rtp.report()
        echo = await far.report(settle=0.0)
        await measuring
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(callee, 15)
        step = MediaStep(
            calls=calls,
            answered=min(counts["answered"], run.successful) if run.successful else 0,
            sent=counts["sent"],
            received=counts["received"],
            worst_call_loss=counts["worst_call_loss"],
            cores=plateau.cores,
            load_generator=(counts["cpu"] + echo["cpu"]) / max(1e-9, time.monotonic() - started),
            late_max=counts["late_max"],
            sipp_failed=run.lost,
            echoed=echo["echoed"],
            rtt_ms=counts["rtt_ms"],
            harness_drops=counts["drops"] + echo["drops"] + echo["stale"],
            far_wait_ms=echo["wait_ms"],
        )
        steps.append(step)
        (step_folder / "rtp.json").write_text(json.dumps({**counts, "far": echo}, indent=1))
        worst = step.worst_call_loss
        print(
            f"  {name:9} {calls:4} calls: {step.answered}/{calls} answered, "
            f"RTP {step.received}/{step.sent} back = {step.loss:.3%} lost "
            f"(worst call {worst if worst is None else f'{worst:.2%}'}; {step.echoed} reached "
            f"the far end; {step.harness_drops} dropped by the load generator itself), "
            f"round trip {fmt_rtt(step.rtt_ms)} (of which waiting for the far end's echo: "
            f"p99 {(step.far_wait_ms or {}).get('p99', '-')} ms), server CPU "
            + ", ".join(f"{k} {v:.2f}" for k, v in step.cores.items())
            + f" cores ({1000 * step.cpu / calls:.2f} ms/s per call); rtp_load "
            f"{step.load_generator:.2f} cores, sent up to {1000 * step.late_max:.0f} ms late; "
            f"load {load()} {'PASS' if step.passed else 'FAIL'}"
            + (
                " (the load generator dropped packets itself: its limit, not the server's)"
                if step.generator_limited
                else " (the load generator got no core for a while: a loaded box's figure)"
                if step.late_max > GENERATOR_LATE
                else ""
            ),
            flush=True,
        )
        if not step.passed:
            break
        await asyncio.sleep(1.0)
    return steps


async def seed_media(database_url: str) -> None:
    """What bench/sip.py's seed does not make: an extension that may call out, an IVR menu."""
    from core import migrations
    from core.db import Database
    from core.models import Department
    from voip.features.models import IvrMenuRow
    from voip.models import ClassOfService
    from voip.service import new_extension

    await migrations.upgrade_async(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            department = Department(code="MEDIA", name="Media bench")
            session.add(department)
            await session.flush()
            session.add(
                new_extension(
                    number=TRUNK_CALLER,
                    name="Trunk caller",
                    password=PASSWORD,
                    realm=REALM,
                    department_id=department.id,
                    class_of_service=ClassOfService.NATIONAL,
                )
            )
            session.add(
                IvrMenuRow(
                    number=IVR_NUMBER,
                    name="Bench attendant",
                    greeting="Welcome to the exchange. For sales press one, for support press two.",
                    options=f"1={CALLEE}, 2={CALLER}",
                    language="en",
                    timeout_seconds=5,
                    retries=2,
                )
            )
    finally:
        await db.close()


async def unicomm_anchored(
    work: Path,
    rtp: RtpLoad,
    far: RtpLoad,
    args: argparse.Namespace,
    deadline: float,
    extra: dict[str, str],
) -> list[MediaStep]:
    carrier_port = free_sip_port()
    server = Unicomm(
        work / "unicomm",
        {
            "voip_trunk_host": "127.0.0.1",
            "voip_trunk_port": carrier_port,  # type: ignore[dict-item]
            "voip_trunk_register": "false",
            "voip_trunk_username": "bench",
            # Relayed calls never reach a media worker: none started, so the CPU is the relay's.
            "voip_media_workers": 0,  # type: ignore[dict-item]
            **extra,
        },
    )
    try:
        await seed_media(str(server.database_url))
        await server.start(0)
        assert server.process is not None
        print(f"unicomm on udp 127.0.0.1:{server.port}, trunk to 127.0.0.1:{carrier_port}")
        return await anchored_steps(
            "unicomm", server.port, carrier_port, TRUNK_CALLER,
            {"unicomm": tree_clock(server.process.pid)}, rtp, far, work / "unicomm-calls",
            args, deadline,
        )  # fmt: skip
    finally:
        server.stop()


async def kamailio_anchored(
    work: Path, rtp: RtpLoad, far: RtpLoad, args: argparse.Namespace, deadline: float
) -> list[MediaStep]:
    rtpengine = Rtpengine(work / "rtpengine", args.rtpengine_threads)
    kamailio = Kamailio(
        work / "kamailio",
        defines=("WITH_RTPENGINE", f'RTPENGINE_SOCK="udp:127.0.0.1:{rtpengine.port}"'),
    )
    try:
        await rtpengine.start()
        await kamailio.start(0)
        assert kamailio.process is not None and rtpengine.process is not None
        callee_port = free_sip_port()
        registered = await register(work / "callee-register", kamailio.port, [OUTSIDE], callee_port)
        if registered.successful != 1:
            raise RuntimeError(f"kamailio: the callee could not register ({work})")
        print(f"kamailio on udp 127.0.0.1:{kamailio.port}, rtpengine ng on {rtpengine.port}")
        return await anchored_steps(
            "kamailio", kamailio.port, callee_port, CALLER,
            {"kamailio": tree_clock(kamailio.process.pid),
             "rtpengine": tree_clock(rtpengine.process.pid)},
            rtp, far, work / "kamailio-calls", args, deadline,
        )  # fmt: skip
    finally:
        kamailio.stop()
        rtpengine.stop()


def fmt_rtt(rtt: dict[str, float] | None) -> str:
    if not rtt:
        return "-"
    return f"p50 {rtt['p50']:g} / p99 {rtt['p99']:g} / max {rtt['max']:g} ms"


def best(steps: list[MediaStep]) -> MediaStep | None:
    found = None
    for each in steps:
        if not each.passed:
            break
        found = each
    return found


# -- 2. media workers ------------------------------------------------------------------------


@dataclass
class Sessions:
    kind: str
    pool: int
    offered: int
    answered: int
    busy: int
    heard: int  # answered sessions whose caller received RTP that is not silence
    received_min: int
    first_packet_p50: float | None
    cores: dict[str, float]
    messages: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return CALLS_PER_WORKER * self.pool

    @property
    def hung(self) -> int:
        return self.offered - self.answered - self.busy

    @property
    def cpu_per_session(self) -> float:
        return sum(self.cores.values()) / max(1, self.answered)


async def voicemails(server: Unicomm) -> int:
    from sqlalchemy import func, select

    from core.db import Database
    from voip.features.models import VoicemailRow

    db = Database(str(server.database_url))
    try:
        async with db.session() as session:
            count = await session.scalar(select(func.count()).select_from(VoicemailRow))
    finally:
        await db.close()
    return int(count or 0)


async def sessions(
    server: Unicomm,
    kind: str,
    pool: int,
    offered: int,
    hold: float,
    rtp: RtpLoad,
    folder: Path,
) -> Sessions:
    assert server.process is not None
    number = IVR_NUMBER if kind == "ivr" else VOICEMAIL_NUMBER
    messages_before = await voicemails(server) if kind == "voicemail" else 0
    rate = 50.0
    started = time.monotonic()
    main, children = server.process.pid, workers(server.process.pid)

    def workers_cpu() -> float:
        return sum(cpu_seconds(child) for child in children)

    plateau = Plateau({"main": lambda: cpu_seconds(main) - workers_cpu(), "workers": workers_cpu})
    measuring = asyncio.create_task(
        plateau.measure(started + offered / rate + 1.0, started + hold - 0.5)
    )
    run = await call_out(
        folder, server.port, number, CALLER, rtp,
        calls=offered, rate=rate, hold=hold, voiced=True,
    )  # fmt: skip
    counts = await rtp.report()
    await measuring
    messages = None
    if kind == "voicemail":
        await asyncio.sleep(1.5)  # the recorder's WAV is finalised, then the message filed
        messages = await voicemails(server) - messages_before
    heard = sum(1 for v in counts["voiced_per_call"] if v > 0)
    result = Sessions(
        kind=kind,
        pool=pool,
        offered=offered,
        answered=counts["answered"],
        busy=counts["busy"],
        heard=heard,
        received_min=min(counts["received_per_call"], default=0),
        first_packet_p50=counts["first_packet_p50"],
        cores=plateau.cores,
        messages=messages,
        extra={"sipp_failed": run.failed, "sipp_ok": run.successful},
    )
    return result


def workers(pid: int) -> list[int]:
    """The server's children (its media workers); cpu_seconds counts a process's tree."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(child) for child in path.read_text().split()]
    return []


def print_sessions(result: Sessions) -> None:
    first = result.first_packet_p50
    print(
        f"  pool {result.pool} ({result.capacity} slots) {result.kind:9}: "
        f"{result.offered} offered, {result.answered} answered, {result.busy} busy, "
        f"{result.hung} hung; prompt heard by {result.heard}/{result.answered} "
        f"(fewest packets back {result.received_min}, first after "
        f"{'-' if first is None else f'{1000 * first:.0f} ms'})"
        + ("" if result.messages is None else f"; {result.messages} messages filed")
        + "; CPU "
        + ", ".join(f"{k} {v:.2f}" for k, v in result.cores.items())
        + f" cores = {result.cpu_per_session:.3f} per session; load {load()}",
        flush=True,
    )


async def media_workers(
    work: Path, rtp: RtpLoad, args: argparse.Namespace, deadline: float, extra: dict[str, str]
) -> list[Sessions]:
    results: list[Sessions] = []
    for pool in args.pools:
        if time.monotonic() + 2 * args.session_hold + 40 > deadline:
            print(f"  out of time, stopping before a pool of {pool}", flush=True)
            break
        offered = math.ceil(1.5 * CALLS_PER_WORKER * pool)
        server = Unicomm(work / f"pool-{pool}", {"voip_media_workers": pool, **extra})  # type: ignore[dict-item]
        try:
            await seed_media(str(server.database_url))
            await server.start(0)
            print(f"unicomm with {pool} media workers on udp 127.0.0.1:{server.port}")
            for kind in ("ivr", "voicemail"):
                # One call first: the workers are up, the prompts spoken (espeak-ng, once).
                for attempt in range(5):
                    warm = await sessions(
                        server, kind, pool, 1, 2.0, rtp, work / f"pool-{pool}-{kind}-warm{attempt}"
                    )
                    if warm.answered == 1:
                        break
                    await asyncio.sleep(2.0)
                else:
                    raise RuntimeError(f"pool {pool}: no {kind} call answered ({work})")
                await asyncio.sleep(1.5)  # the warm call's worker slot is free again
                result = await sessions(
                    server, kind, pool, offered, args.session_hold, rtp,
                    work / f"pool-{pool}-{kind}",
                )  # fmt: skip
                print_sessions(result)
                results.append(result)
                await asyncio.sleep(2.0)
        finally:
            server.stop()
    return results


# -- main ------------------------------------------------------------------------------


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def summary(anchored: dict[str, list[MediaStep]], pools: list[Sessions]) -> None:
    if anchored:
        print(
            "\n| server | concurrent G.711 calls at <=0.1% RTP loss | loss | RTP round trip "
            "| server CPU (cores) | first failing step | ... with a median round trip <= 50 ms |"
        )
        print("|---|---|---|---|---|---|---|")
        chosen: dict[str, MediaStep | None] = {}
        for name, steps in anchored.items():
            step = chosen[name] = best(steps)
            failed = next((s for s in steps if not s.passed), None)
            failing = (
                f"{failed.calls} calls: {failed.loss:.2%} lost, round trip {fmt_rtt(failed.rtt_ms)}"
                if failed
                else "-"
            )
            paced = None
            for each in steps:
                if not each.keeping_pace:
                    break
                paced = each
            pace = f"{paced.calls}" if paced else "none"
            if step is None:
                print(f"| {name} | none passed | - | - | - | {failing} | {pace} |")
                continue
            cores = " + ".join(f"{k} {v:.2f}" for k, v in step.cores.items())
            print(
                f"| {name} | {step.calls} | {step.loss:.3%} | {fmt_rtt(step.rtt_ms)} | {cores} "
                f"| {failing} | {pace} |"
            )
        u, k = chosen.get("unicomm"), chosen.get("kamailio")
        if u and k:
            print(
                f"\nratio unicomm/(Kamailio+rtpengine): {u.calls / k.calls:.2f} "
                f"({u.calls} vs {k.calls} calls)"
            )
            after = anchored["kamailio"][anchored["kamailio"].index(k) + 1 :]
            if not after or after[0].generator_limited:
                print(
                    "(Kamailio + rtpengine passed every step the load generator could drive: "
                    "its real limit is higher, the ratio an upper bound)"
                )
    if pools:
        print(
            "\n| pool | session | offered | answered | busy (486) | hung | prompt heard "
            "| messages | CPU per session (cores) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for s in pools:
            print(
                f"| {s.pool} ({s.capacity} slots) | {s.kind} | {s.offered} | {s.answered} "
                f"| {s.busy} | {s.hung} | {s.heard}/{s.answered} "
                f"| {'-' if s.messages is None else s.messages} | {s.cpu_per_session:.3f} |"
            )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=numbers, default=list(STEPS), help="concurrent calls")
    parser.add_argument("--hold", type=float, default=15.0, help="anchored call duration, s")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds to set a step's calls up")
    parser.add_argument("--pools", type=numbers, default=list(POOLS), help="media pool sizes")
    parser.add_argument("--session-hold", type=float, default=8.0, help="IVR/voicemail call, s")
    parser.add_argument(
        "--only", choices=("unicomm", "kamailio", "workers"), action="append",
        help="run only these parts (repeatable); default: all three",
    )  # fmt: skip
    parser.add_argument("--rtpengine-threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=560.0, help="seconds for the whole run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra unicomm setting")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    parts = set(args.only or ("unicomm", "kamailio", "workers"))
    if args.hold < max(args.ramp, 1.0) + 3:
        parser.error("--hold must leave a plateau of 3 s after the --ramp")
    extra = dict(item.split("=", 1) for item in args.set)
    deadline = time.monotonic() + args.budget
    work = Path(tempfile.mkdtemp(prefix="bench-sip-media-"))
    print(f"load average at start: {load()} (work folder {work})", flush=True)
    rtp, far = RtpLoad(), RtpLoad(echo=True)
    anchored: dict[str, list[MediaStep]] = {}
    pools: list[Sessions] = []
    try:
        most = max([*args.calls, 1])
        await rtp.start(most if parts - {"workers"} else 64)
        if parts - {"workers"}:
            await far.start(most)
        if "unicomm" in parts:
            anchored["unicomm"] = await unicomm_anchored(work, rtp, far, args, deadline, extra)
        if "kamailio" in parts:
            anchored["kamailio"] = await kamailio_anchored(work, rtp, far, args, deadline)
        if "workers" in parts:
            pools = await media_workers(work, rtp, args, deadline, extra)
    finally:
        await rtp.stop()
        await far.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {load()}")
    summary(anchored, pools)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
