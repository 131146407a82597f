"""News-on-demand benchmarks: transcode overhead, HLS serving against nginx, many viewers.

    .venv/bin/python bench/vod.py [--seconds 600] [--repeat 3] [--rounds 3] [--viewers 1000]

1. A synthetic 720p25 input (testsrc2 + tone) is transcoded to the HLS ladder by
   unicomm (import copy, probe, job row, HLS with poster and thumbnails, master
   playlist, publish) and by the same ffmpeg commands run bare; the ratio is
   unicomm's overhead. Runs are interleaved, the order alternating, and the
   median is reported with the CPU seconds of each side (steadier than wall time
   on a shared box).
2. ``wrk -t2 -c100`` fetches the same playlist and segment from ``unicomm serve``
   (signed kiosk URL, no session lookup) and from Debian's nginx, in ``--rounds``
   interleaved rounds (both servers see the same load); medians are reported.
3. N simulated viewers each fetch one segment per segment duration (playback
   pace) from unicomm and from nginx; the p99 time to first byte is reported.

Every section prints the load average: figures taken on a busy box are ratios only.

Needs Debian's ``wrk`` and ``nginx`` (installed only for this benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import migrations  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.context import AppContext  # noqa: E402
from media import ffmpeg, hls  # noqa: E402
from vod.models import Kind, Level  # noqa: E402
from vod.service import VodService  # noqa: E402

UNICOMM = str(Path(sys.executable).parent / "unicomm")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def make_input(path: Path, seconds: int) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1280x720:rate=25:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "18",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )


async def bare_transcode(source: Path, out: Path, settings: object) -> tuple[float, float]:
    """The commands unicomm runs, without unicomm around them: (wall, CPU) seconds."""
    probe = await ffmpeg.probe(source)
    segment = settings.vod_segment_seconds  # type: ignore[attr-defined]
    plan = ffmpeg.hls_video_args(
        source,
        out,
        probe,
        settings.vod_ladder,  # type: ignore[attr-defined]
        segment,
        settings.vod_x264_preset,  # type: ignore[attr-defined]
        stills=ffmpeg.stills_plan(out, probe.duration, segment),
    )
    for index in range(len(plan.rungs)):
        (out / f"v{index}").mkdir(parents=True)
    (out / "thumbs").mkdir()
    commands = [plan.args]
    if plan.stills is None:  # no duration known: the stills take passes of their own
        duration = probe.duration or 0.0
        commands += [
            ffmpeg.poster_args(source, out / "poster.jpg", min(duration * 0.1, 5.0)),
            ffmpeg.thumbnails_args(source, out / "thumbs", max(float(segment), duration / 20)),
        ]
    return run_bare(commands)


def run_bare(commands: list[list[str]]) -> tuple[float, float]:
    # Blocking on purpose: the bare run has nothing else to do while ffmpeg works.
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for args in commands:
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True
        )
    return time.perf_counter() - started, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


def make_workdir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="unicomm-bench-vod-"))
    work.chmod(0o755)  # nginx's workers (nobody/www-data) read the same files
    return work


async def unicomm_transcode(source: Path, data: Path) -> tuple[float, float, str, str]:
    """Import and transcode through the service: (wall, CPU incl. ffmpeg) seconds, key, URL."""
    settings = load_settings(None, data_dir=str(data))
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    service = VodService(settings, ctx.db, ctx.state, ctx.secret)
    async with ctx.db.session() as session:
        await service.add_station(
            session, code="BENCH", name="bench", level=Level.CITY, kind=Kind.TV
        )
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF)
    started = time.perf_counter()
    job = await service.import_file(
        source, station_code="BENCH", title="bench", origin="cli", claim=True
    )
    item = await service.run_job(job)
    elapsed = time.perf_counter() - started
    used = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF) - cpu
    assert item is not None, "transcode failed"
    signed, _ = service.signed_path(item.key, minutes=600)
    await ctx.close()
    return elapsed, used, item.key, signed


def wrk(url: str, seconds: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c100", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    assert transfer is not None
    # wrk's units are binary (1 GB = 2**30 bytes).
    scale = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[transfer.group(2)]
    return requests, float(transfer.group(1)) * scale


def start_nginx(root: Path, port: int, work: Path) -> subprocess.Popen[bytes]:
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
""")
    process = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"])
    time.sleep(0.5)
    return process


def start_unicomm(data: Path, port: int, log: Path, workers: int = 0) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNICOMM_")}
    env.update(
        UNICOMM_DATA_DIR=str(data),
        UNICOMM_HTTP_PORT=str(port),
        UNICOMM_HTTP_HOST="127.0.0.1",
        UNICOMM_LOG_LEVEL="WARNING",
        UNICOMM_SIP_PORT=str(free_port()),
        UNICOMM_SIP_TLS_PORT=str(free_port()),
    )
    if workers:
        env["UNICOMM_VOD_MEDIA_WORKERS"] = str(workers)
    process = subprocess.Popen(
        [UNICOMM, "serve"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd="/"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(log.read_text()[-2000:])


async def viewers(
    base: str, segments: list[str], count: int, seconds: float, segment_seconds: float
) -> list[float]:
    """Each viewer fetches the next segment every segment_seconds; returns TTFBs."""
    ttfb: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def viewer(index: int) -> None:
            await asyncio.sleep(segment_seconds * index / count)  # spread the starts
            position = index % len(segments)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                started = time.perf_counter()
                async with session.get(f"{base}/{segments[position]}") as response:
                    await response.content.readany()
                    ttfb.append(time.perf_counter() - started)
                    while await response.content.readany():
                        pass
                position = (position + 1) % len(segments)
                await asyncio.sleep(max(0.0, segment_seconds - (time.perf_counter() - started)))

        await asyncio.gather(*(viewer(i) for i in range(count)))
    return ttfb


def median(values: list[float]) -> float:
    return statistics.median(values)


async def transcodes(args: argparse.Namespace, work: Path, source: Path) -> tuple[str, str]:
    """Interleaved runs, the order alternating; returns the last unicomm item's key and URL."""
    settings = load_settings(None, data_dir=str(work / "bare"))
    print(
        f"input: {args.seconds} s 720p25, ladder {settings.vod_ladder}, "
        f"preset {settings.vod_x264_preset}, {settings.vod_segment_seconds} s segments; {load()}"
    )
    bare: list[tuple[float, float]] = []
    through: list[tuple[float, float]] = []
    key = signed = ""

    async def run_bare() -> None:
        shutil.rmtree(work / "bare-out", ignore_errors=True)
        bare.append(await bare_transcode(source, work / "bare-out", settings))

    async def run_unicomm() -> None:
        nonlocal key, signed
        shutil.rmtree(work / "data", ignore_errors=True)
        wall, cpu, key, signed = await unicomm_transcode(source, work / "data")
        through.append((wall, cpu))

    for run in range(max(1, args.repeat)):
        if args.repeat == 0:  # serving only: one transcode for the files
            await run_unicomm()
            print(f"unicomm transcode {through[0][0]:.1f} s (no bare run); {load()}")
            return key, signed
        order = [run_bare, run_unicomm] if run % 2 == 0 else [run_unicomm, run_bare]
        for step in order:
            await step()
        print(
            f"run {run + 1} ({'bare first' if run % 2 == 0 else 'unicomm first'}): "
            f"bare {bare[-1][0]:.1f} s ({bare[-1][1]:.1f} s CPU), "
            f"unicomm {through[-1][0]:.1f} s ({through[-1][1]:.1f} s CPU), "
            f"ratio {through[-1][0] / bare[-1][0]:.3f}; {load()}"
        )
    wall_b, wall_u = median([b[0] for b in bare]), median([u[0] for u in through])
    cpu_b, cpu_u = median([b[1] for b in bare]), median([u[1] for u in through])
    ratios = [u[0] / b[0] for b, u in zip(bare, through, strict=True)]
    print(
        f"transcode median of {len(bare)}: bare ffmpeg {wall_b:.1f} s, unicomm {wall_u:.1f} s, "
        f"overhead ratio {median(ratios):.3f} (per-run {', '.join(f'{r:.3f}' for r in ratios)}); "
        f"CPU bare {cpu_b:.1f} s, unicomm {cpu_u:.1f} s, ratio {cpu_u / cpu_b:.3f}; "
        f"{args.seconds / wall_u:.2f}x real time"
    )
    return key, signed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=600, help="length of the 720p input")
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=8, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds")
    parser.add_argument("--viewer-seconds", type=float, default=30.0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved transcode runs (0: unicomm once only)"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="vod_media_workers of unicomm serve (0: default)"
    )
    args = parser.parse_args()
    work = make_workdir()
    try:
        source = work / "input.mp4"
        make_input(source, args.seconds)
        key, signed = await transcodes(args, work, source)
        segment_seconds = float(
            load_settings(None, data_dir=str(work / "data")).vod_segment_seconds
        )

        items = work / "data" / "vod" / "items"
        playlist = hls.parse_media((items / key / "v0" / "index.m3u8").read_text())
        segment = f"v0/{playlist.segments[1].uri}"
        size = (items / key / segment).stat().st_size
        port_u, port_n = free_port(), free_port()
        server = start_unicomm(work / "data", port_u, work / "serve.log", args.workers)
        nginx = start_nginx(items, port_n, work)
        try:
            prefix = signed.rsplit("/", 1)[0]
            urls = {
                ("unicomm", "playlist"): f"http://127.0.0.1:{port_u}{prefix}/v0/index.m3u8",
                ("nginx", "playlist"): f"http://127.0.0.1:{port_n}/{key}/v0/index.m3u8",
                ("unicomm", "segment"): f"http://127.0.0.1:{port_u}{prefix}/{segment}",
                ("nginx", "segment"): f"http://127.0.0.1:{port_n}/{key}/{segment}",
            }
            results: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in urls}
            for round_ in range(args.rounds):
                for kind in ("playlist", "segment"):
                    servers = ["unicomm", "nginx"] if round_ % 2 == 0 else ["nginx", "unicomm"]
                    for name in servers:
                        rps, bps = wrk(urls[name, kind], args.duration)
                        results[name, kind].append((rps, bps))
                        print(
                            f"round {round_ + 1} {name:8s} {kind:8s} {rps:10.0f} req/s "
                            f"{bps / 1e9:6.2f} GB/s; {load()}"
                        )
            playlist_ratio = median(
                [
                    u[0] / n[0]
                    for u, n in zip(
                        results["unicomm", "playlist"], results["nginx", "playlist"], strict=True
                    )
                ]
            )
            segment_ratio = median(
                [
                    u[1] / n[1]
                    for u, n in zip(
                        results["unicomm", "segment"], results["nginx", "segment"], strict=True
                    )
                ]
            )
            for name in ("unicomm", "nginx"):
                print(
                    f"{name:8s} median of {args.rounds}: playlist "
                    f"{median([r[0] for r in results[name, 'playlist']]):.0f} req/s, segment "
                    f"{median([r[1] for r in results[name, 'segment']]) / 1e9:.2f} GB/s "
                    f"({median([r[0] for r in results[name, 'segment']]):.0f} req/s)"
                )
            print(
                f"segment {size / 1e6:.2f} MB; unicomm/nginx (median of per-round ratios): "
                f"playlist req/s {playlist_ratio:.3f}, segment bytes/s {segment_ratio:.3f}"
            )
            names = [f"v0/{s.uri}" for s in playlist.segments]
            for name, base in [
                ("unicomm", f"http://127.0.0.1:{port_u}{prefix}"),
                ("nginx", f"http://127.0.0.1:{port_n}/{key}"),
            ]:
                ttfb = await viewers(
                    base, names, args.viewers, args.viewer_seconds, segment_seconds
                )
                ttfb.sort()
                p50 = ttfb[len(ttfb) // 2] * 1000
                p99 = ttfb[min(len(ttfb) - 1, int(0.99 * len(ttfb)))] * 1000
                print(
                    f"{name:8s} {args.viewers} viewers at playback pace, "
                    f"{args.viewer_seconds:.0f} s: {len(ttfb)} segments, TTFB p50 {p50:.1f} ms, "
                    f"p99 {p99:.1f} ms, max {ttfb[-1] * 1000:.1f} ms; {load()}"
                )
        finally:
            server.send_signal(signal.SIGTERM)
            nginx.terminate()
            server.wait(30)
            nginx.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
