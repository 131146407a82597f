"""Kiosk benchmark: N simulated kiosks on one ``unicomm serve`` node.

Each kiosk is an aiohttp WebSocket client on ``/kiosk/api/live`` (one client process)
that also posts a heartbeat every 30 s, as the kiosk app does. Measured:

- the time from publishing an alert (``POST /api/kiosk/alerts``) to its arrival at each
  connection: p50, p99 and the last arrival (every kiosk reached), over several alerts;
- the server's CPU (cores) and memory with the kiosks connected and beating;
- the feed's requests/s with ETag revalidation (``If-None-Match`` → 304), and without.

The server runs in its own process (SQLite, in-process bus: the embedded default), so
the clients' CPU is not counted as the server's.

    .venv/bin/python bench/kiosk.py --kiosks 1000 --alerts 5 --steady-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.processes import ServerProcess, run_cli  # noqa: E402

from core import migrations  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.context import AppContext  # noqa: E402
from kiosk import service  # noqa: E402

HEARTBEAT_SECONDS = 30


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def make_kiosks(config: Path, count: int) -> list[str]:
    """Paired kiosks with device tokens, made through the service as pairing would."""
    settings = load_settings(config)
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    tokens = []
    try:
        async with ctx.db.session() as session:
            for code, district in (("EAST", "东城"), ("WEST", "西城")):
                await service.add_group(session, code, district, district=district)
        for number in range(count):
            async with ctx.db.session() as session:
                started = await service.start_pairing(session, dt.timedelta(minutes=15), "bench")
                group = "EAST" if number % 2 else "WEST"
                await service.approve_pairing(session, started.code, f"k{number:05d}", group)
            async with ctx.db.session() as session:
                claimed = await service.claim_pairing(session, ctx.auth, started.claim)
            assert claimed.token is not None
            tokens.append(claimed.token)
    finally:
        await ctx.close()
    return tokens


class Kiosk:
    def __init__(self, token: str) -> None:
        self.token = token
        self.arrivals: dict[int, float] = {}
        self.socket: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, http: aiohttp.ClientSession, base: str) -> None:
        self.socket = await http.ws_connect(f"{base}/kiosk/api/live", heartbeat=None)
        await self.socket.send_str(json.dumps({"token": self.token}))
        hello = json.loads((await self.socket.receive(timeout=60)).data)
        assert hello["type"] == "hello", hello

    async def listen(self) -> None:
        assert self.socket is not None
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if data["type"] == "alert":
                self.arrivals[data["alert"]["id"]] = time.monotonic()

    async def beat(self, http: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> int:
        sent = 0
        await asyncio.sleep(random.uniform(0, HEARTBEAT_SECONDS))  # spread as real kiosks are
        headers = {"Authorization": f"Bearer {self.token}"}
        while not stop.is_set():
            body = {"app_version": "1", "content_version": "bench", "uptime_seconds": sent * 30}
            async with http.post(f"{base}/kiosk/api/heartbeat", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            sent += 1
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                pass
        return sent


async def feed_rate(
    http: aiohttp.ClientSession, base: str, tokens: list[str], seconds: float, revalidate: bool
) -> tuple[float, int]:
    """Feed requests/s from 50 concurrent kiosks; with ``revalidate`` each sends its ETag."""
    deadline = time.monotonic() + seconds
    done = 0
    statuses: set[int] = set()

    async def worker(token: str) -> None:
        nonlocal done
        headers = {"Authorization": f"Bearer {token}"}
        etag = ""
        while time.monotonic() < deadline:
            sent = {**headers, "If-None-Match": etag} if revalidate and etag else headers
            async with http.get(f"{base}/kiosk/api/feed", headers=sent) as response:
                await response.read()
                etag = response.headers.get("ETag", etag)
                statuses.add(response.status)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(token) for token in tokens[:50]))
    # Each kiosk's first request is a full 200; a window too short shows only those.
    expected = 304 if revalidate else 200
    assert expected in statuses, f"only {statuses} seen: lengthen --feed-seconds"
    return done / (time.monotonic() - started), expected


async def run(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    folder = Path(tempfile.mkdtemp(prefix="unicomm-bench-kiosk-"))
    config = folder / "unicomm.toml"
    config.write_text(
        'data_dir = "var"\nsip_port = 0\nsip_tls_port = 0\nlog_level = "WARNING"\n'
        f"kiosk_heartbeat_seconds = {HEARTBEAT_SECONDS}\n"
    )
    made = time.monotonic()
    tokens = await make_kiosks(config, args.kiosks)
    print(f"{args.kiosks} kiosks paired in {time.monotonic() - made:.1f} s", flush=True)
    for command in (
        ("user", "add", "duty", "--role", "duty_officer", "--password", "bench-password"),
    ):
        done = run_cli("--config", str(config), *command, cwd=folder)
        assert done.returncode == 0, done.stderr
    made_token = run_cli("--config", str(config), "token", "add", "duty", cwd=folder)
    bearer = {"Authorization": f"Bearer {made_token.stdout.strip()}"}

    server = ServerProcess(config, folder / "server.log")
    pid = server.process.pid
    base = server.base_url
    try:
        rss_idle = rss_mib(pid)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            kiosks = [Kiosk(token) for token in tokens]
            started = time.monotonic()
            for batch in range(0, len(kiosks), 100):
                await asyncio.gather(*(k.connect(http, base) for k in kiosks[batch : batch + 100]))
            print(f"connected in {time.monotonic() - started:.1f} s", flush=True)
            listeners = [asyncio.create_task(k.listen()) for k in kiosks]
            stop = asyncio.Event()
            beaters = [asyncio.create_task(k.beat(http, base, stop)) for k in kiosks]

            # Steady state: connected and beating; the server's share of a core.
            await asyncio.sleep(5)
            cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(args.steady_seconds)
            steady_cores = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
            rss_connected = rss_mib(pid)

            delays: list[float] = []
            last: list[float] = []
            for number in range(args.alerts):
                sent = time.monotonic()
                async with http.post(
                    f"{base}/api/kiosk/alerts",
                    json={"headline": f"演练 {number}", "expires_minutes": 10},
                    headers=bearer,
                ) as published:
                    assert published.status == 201, await published.text()
                    alert_id = (await published.json())["id"]
                deadline = time.monotonic() + 30
                while sum(alert_id in k.arrivals for k in kiosks) < len(kiosks):
                    assert time.monotonic() < deadline, "an alert did not reach every kiosk"
                    await asyncio.sleep(0.01)
                arrivals = [k.arrivals[alert_id] - sent for k in kiosks]
                delays.extend(arrivals)
                last.append(max(arrivals))
                print(
                    f"alert {number}: p50 {statistics.median(arrivals) * 1000:.0f} ms, "
                    f"all {max(arrivals) * 1000:.0f} ms",
                    flush=True,
                )
                await asyncio.sleep(2)

            revalidated, _ = await feed_rate(http, base, tokens, args.feed_seconds, True)
            full, _ = await feed_rate(http, base, tokens, args.feed_seconds, False)

            stop.set()
            beats = sum(await asyncio.gather(*beaters))
            for kiosk in kiosks:
                assert kiosk.socket is not None
                await kiosk.socket.close()
            await asyncio.gather(*listeners, return_exceptions=True)
    finally:
        server.stop()

    print()
    print(f"kiosks connected            {args.kiosks} (heartbeat every {HEARTBEAT_SECONDS} s)")
    print(f"heartbeats sent             {beats}")
    print(f"server CPU, steady          {steady_cores:.3f} cores over {args.steady_seconds} s")
    print(
        f"server RSS                  {rss_idle:.1f} MiB idle -> {rss_connected:.1f} MiB "
        f"({(rss_connected - rss_idle) * 1024 / args.kiosks:.1f} KiB per kiosk)"
    )
    print(
        f"alert -> kiosk              p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, "
        f"every kiosk (worst of {args.alerts}) {max(last) * 1000:.0f} ms"
    )
    print(f"feed, If-None-Match (304)   {revalidated:.0f} req/s")
    print(f"feed, full (200)            {full:.0f} req/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=5)
    parser.add_argument("--steady-seconds", type=float, default=60)
    parser.add_argument("--feed-seconds", type=float, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
