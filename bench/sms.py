"""SMS broadcast benchmark: N recipients through the official twilio library to the local server.

Measures messages handed to the provider per second (every claim and result committed)
and the time from "send" to the last status callback recorded, on SQLite and/or
PostgreSQL. No rate limit, callbacks signed and validated as in production. Also prints
the CPU time of the unicomm process per message (engine, callbacks, the twilio library,
aiosqlite's thread), which a busy shared machine disturbs far less than the rate.

Durability: PostgreSQL is started with its defaults (fsync and synchronous_commit on: a
commit survives a power cut), unlike the tests' server (fsync off). SQLite runs with the
project's pragmas (WAL, synchronous=NORMAL: a commit survives the process being killed,
and the last ones may be lost to a power cut); ``--sqlite-synchronous FULL`` makes every
commit survive a power cut too.

    .venv/bin/python bench/sms.py --recipients 10000 --backend sqlite --backend postgres
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import event  # noqa: E402
from support.servers import free_port  # noqa: E402

from core import migrations  # noqa: E402
from core.cli import tune_gc  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.context import AppContext  # noqa: E402
from core.logs import configure_logging  # noqa: E402
from core.models import Department  # noqa: E402
from core.web import create_app  # noqa: E402
from sms import service  # noqa: E402
from sms.models import Recipient  # noqa: E402
from sms.states import FINAL, DeliveryState  # noqa: E402
from sms.testing.twilio_server import read_log  # noqa: E402

ACCOUNT, TOKEN = "AC" + "9" * 32, "bench-token"


INITDB = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale", "C"]


class DurablePostgres:
    """A private PostgreSQL with its default, durable settings (the tests' one has fsync off)."""

    def __init__(self) -> None:
        bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="unicomm-bench-pg-"))
        self.port = free_port()
        prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run as Debian's postgres user
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        data = self.root / "data"
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), *INITDB],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = ["-k", str(self.root), "-c", "listen_addresses=127.0.0.1"]
        self.process = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        for _ in range(200):
            if subprocess.run(ready, stdout=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        shutil.rmtree(self.root, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for_port(port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return


async def run(
    backend: str,
    database_url: str,
    recipients: int,
    folder: Path,
    synchronous: str,
    in_flight: int,
) -> dict[str, Any]:
    # The provider runs in its own process, as Twilio would: this one measures only unicomm.
    twilio_port = free_port()
    twilio = subprocess.Popen(  # noqa: ASYNC220 (started once, before timing)
        [
            sys.executable,
            "-m",
            "sms.testing.twilio_server",
            "--port",
            str(twilio_port),
            "--account-sid",
            ACCOUNT,
            "--auth-token",
            TOKEN,
            "--log",
            str(folder / "twilio.jsonl"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    await wait_for_port(twilio_port)  # a loaded machine may take seconds to start it
    twilio_url = f"http://127.0.0.1:{twilio_port}"
    port = free_port()
    settings = load_settings(
        None,
        data_dir=str(folder / "var"),
        database_url=database_url,
        sms_provider="twilio",
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
        twilio_from="+15005550006",
        twilio_api_base=twilio_url,
        public_url=f"http://127.0.0.1:{port}",
        sms_approval_threshold=0,
        sms_max_in_flight=in_flight,
        http_port=port,
    )
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    if backend == "sqlite" and synchronous:

        def pragma(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        event.listen(ctx.db.engine.sync_engine, "connect", pragma)
    runner = web.AppRunner(create_app(ctx), access_log=None)
    await runner.setup()
    tune_gc()  # as `unicomm serve` does once the app is built
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with ctx.db.session() as session:
            session.add(Department(code="BENCH", name="bench"))
        csv = "name,mobile,department,role\n" + "".join(
            f"p{i},137{i:08d},BENCH,staff\n" for i in range(recipients)
        )
        async with ctx.db.session() as session:
            await service.import_contacts(session, csv.encode())
        started = time.perf_counter()
        cpu_started = time.process_time()
        provider_cpu_started = cpu_seconds(twilio.pid)
        async with ctx.db.session() as session:
            contacts = await service.resolve_audience(session, departments=["BENCH"])
            broadcast = await service.create_broadcast(
                session,
                body="Benchmark alert: please acknowledge.",
                created_by="bench",
                contacts=contacts,
                approval_threshold=0,
            )
        handed_at = final_at = None
        while final_at is None:
            # Every 0.1 s: the count is work for the process measured, kept small.
            await asyncio.sleep(0.1)
            async with ctx.db.session() as session:
                counts = dict(
                    (
                        await session.execute(
                            select(Recipient.state, func.count())
                            .where(Recipient.broadcast_id == broadcast.id)
                            .group_by(Recipient.state)
                        )
                    ).all()
                )
            pending = counts.get(DeliveryState.QUEUED, 0) + counts.get(DeliveryState.SENDING, 0)
            if handed_at is None and pending == 0:
                handed_at = time.perf_counter()
            if sum(c for s, c in counts.items() if DeliveryState(s) in FINAL) == recipients:
                final_at = time.perf_counter()
                cpu = time.process_time() - cpu_started
                provider_cpu = cpu_seconds(twilio.pid) - provider_cpu_started
        assert handed_at is not None
        log = read_log(folder / "twilio.jsonl")
        accepted = len(log)
        assert len({record["to"] for record in log}) == accepted == recipients, "lost or twice"
        return {
            "backend": backend,
            "recipients": recipients,
            "handed_per_second": recipients / (handed_at - started),
            "seconds_to_handed": handed_at - started,
            "seconds_to_last_callback": final_at - started,
            "provider_log_lines": accepted,
            "cpu_ms_per_message": cpu * 1000 / recipients,
            "provider_cpu_ms_per_message": provider_cpu * 1000 / recipients,
            "in_flight": in_flight,
        }
    finally:
        await runner.cleanup()
        twilio.terminate()
        twilio.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=128,
        help="sms_max_in_flight: provider requests in flight (the server's default is 64)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        default="",
        choices=["", "NORMAL", "FULL"],
        help="override the SQLite synchronous pragma (the project's default is NORMAL)",
    )
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    os.environ.pop("UNICOMM_CONFIG", None)
    for backend in args.backend or ["sqlite"]:
        with tempfile.TemporaryDirectory(prefix="unicomm-bench-") as tmp:
            folder = Path(tmp)
            server = None
            if backend == "postgres":
                server = DurablePostgres()
                url = os.environ.get("DATABASE_URL") or server.url
            else:
                url = f"sqlite+aiosqlite:///{folder / 'unicomm.db'}"
            try:
                result = asyncio.run(
                    run(
                        backend,
                        url,
                        args.recipients,
                        folder,
                        args.sqlite_synchronous,
                        args.max_in_flight,
                    )
                )
            finally:
                if server is not None:
                    server.stop()
        print(
            f"{result['backend']:8} {result['recipients']} recipients: "
            f"{result['handed_per_second']:.0f} messages/s handed to the provider "
            f"({result['seconds_to_handed']:.1f} s), last callback recorded after "
            f"{result['seconds_to_last_callback']:.1f} s; "
            f"{result['cpu_ms_per_message']:.2f} ms unicomm CPU per message "
            f"({result['provider_cpu_ms_per_message']:.2f} ms in the provider stand-in); "
            f"{result['in_flight']} in flight; "
            f"provider log {result['provider_log_lines']} lines; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
