"""Conference SFU benchmark: synthetic aiortc venues against a real ``unicomm serve``.

Each synthetic venue publishes a looped, pre-encoded VP8 clip (and Opus) as packets and
receives its slots through the same passthrough the SFU uses, so the clients never
encode or decode: the CPU measured is the server's. The venues are spread over several
client processes (``--workers``) so that the clients are not the bottleneck. Prints, for
each meeting size, the server's CPU per venue and per forwarded stream, the share of the
expected frames delivered, the clients' own CPU, and the forwarding delay (publisher's
send to the arrival of the frame's last packet at the subscriber, read from a trailer the
publisher appends to each frame, on loopback) p50/p99.

    .venv/bin/python bench/conference.py --venues 4 --venues 12 --seconds 20 --workers 4
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import multiprocessing as mp
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conference.sfu import PublishedStream, attach_passthrough

UNICOMM = str(Path(sys.executable).parent / "unicomm")
FPS = 20


def encode_clip(width: int, height: int, seconds: float) -> list[bytes]:
    """A moving test picture encoded once to VP8, a keyframe every second."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = 500_000
    codec.gop_size = FPS
    frames = []
    for index in range(int(seconds * FPS)):
        image = av.VideoFrame(width, height, "yuv420p")
        for plane_index, plane in enumerate(image.planes):
            value = (index * 7 + plane_index * 50) % 255
            plane.update(bytes([value]) * plane.buffer_size)
        image.pts = index
        for packet in codec.encode(image):
            frames.append(bytes(packet))
    for packet in codec.encode(None):
        frames.append(bytes(packet))
    return frames


TRAILER = struct.Struct("!Id")  # venue number, send time (CLOCK_MONOTONIC, system-wide)


class LoopedVideo(MediaStreamTrack):
    """The clip at 20 fps; each frame carries a trailer naming its venue and send time.

    The SFU forwards bytes it does not decode, so the trailer reaches the subscriber
    untouched; CLOCK_MONOTONIC is one clock for every process on the box, so a
    subscriber in another worker process reads the delay straight from the frame.
    """

    kind = "video"

    def __init__(self, frames: list[bytes], number: int) -> None:
        super().__init__()
        self.frames, self.number, self.index = frames, number, 0
        self.start = time.monotonic()

    async def recv(self) -> av.Packet:
        due = self.start + self.index / FPS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        data = self.frames[self.index % len(self.frames)]
        packet = av.Packet(data + TRAILER.pack(self.number, time.monotonic()))
        packet.pts, packet.time_base = self.index * (90000 // FPS), fractions.Fraction(1, 90000)
        self.index += 1
        return packet


class SilentOpus(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate, codec.layout, codec.format = 48000, "stereo", "s16"
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = 48000, 0
        self.payload = next(iter(bytes(p) for p in codec.encode(frame)), b"\xf8\xff\xfe")
        self.index = 0
        self.start = time.monotonic()

    async def recv(self) -> av.Packet:
        await asyncio.sleep(max(0.0, self.start + self.index * 0.02 - time.monotonic()))
        packet = av.Packet(self.payload)
        packet.pts, packet.time_base = self.index * 960, fractions.Fraction(1, 48000)
        self.index += 1
        return packet


@dataclass
class Window:
    """What one worker saw between the parent's two monotonic instants."""

    frames: int = 0
    delays: list[float] = field(default_factory=list)


async def venue(
    base: str,
    room: str,
    number: int,
    clip: list[bytes],
    window: tuple[float, float],
    seen: Window,
    stop: asyncio.Event,
) -> None:
    opened, closes = window
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http", "ws") + "/signaling/conference") as ws,
    ):
        await ws.send_json({"type": "join", "room": room, "venue": f"v{number}", "pin": "1234"})
        while (offer := await ws.receive_json())["type"] != "offer":
            pass
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        publish = offer["publish"]
        for transceiver in pc.getTransceivers():
            if transceiver.mid == publish["video"]:
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(LoopedVideo(clip, number))
            elif transceiver.mid == publish["audio"]:
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(SilentOpus())
            else:
                stream = PublishedStream(transceiver.kind, f"v{number}")
                if transceiver.kind == "video":

                    def on_frame(mime: str, data: bytes, ts: int) -> None:
                        if opened <= time.monotonic() < closes:
                            seen.frames += 1

                    stream.on_frame = on_frame  # type: ignore[method-assign]
                attach_passthrough(transceiver.receiver, stream)
                if transceiver.kind == "video":
                    _time_last_packets(transceiver.receiver, window, seen)
        await pc.setLocalDescription(await pc.createAnswer())
        await ws.send_json({"type": "answer", "sdp": pc.localDescription.sdp})
        reader = asyncio.ensure_future(_drain(ws))
        await stop.wait()
        reader.cancel()
        await pc.close()


def _time_last_packets(receiver: Any, window: tuple[float, float], seen: Window) -> None:
    """Delay at the arrival of each frame's last RTP packet (marker bit), which ends with
    the trailer: the server's share (its jitter buffer, forwarding, packetizing), without
    the subscriber's own jitter buffer, which holds a frame until the next one starts."""
    original = receiver._handle_rtp_packet
    opened, closes = window

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        now = time.monotonic()
        if packet.marker and opened <= now < closes and len(packet.payload) > TRAILER.size:
            _, sent_at = TRAILER.unpack(packet.payload[-TRAILER.size :])
            seen.delays.append(now - sent_at)
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle


def worker(
    base: str,
    room: str,
    numbers: list[int],
    clip: list[bytes],
    window: tuple[float, float],
    results: Any,
) -> None:
    """One client process: its share of the venues, until the window has closed."""

    async def run() -> None:
        seen, stop = Window(), asyncio.Event()
        tasks = [
            asyncio.ensure_future(venue(base, room, n, clip, window, seen, stop)) for n in numbers
        ]
        await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
        cpu = time.process_time() - cpu0
        results.put((seen.frames, seen.delays, cpu))
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(
    base: str, pid: int, count: int, clip: list[bytes], args: argparse.Namespace
) -> dict[str, float]:
    room = f"bench{count}"
    await asyncio.to_thread(
        subprocess.run,
        [UNICOMM, "--config", os.environ["BENCH_CONFIG"], "room", "add", room, "--pin", "1234"],
        check=True,
        capture_output=True,
    )
    # Venues are dealt round-robin to worker processes: one Python process running
    # twelve aiortc clients (144 transceivers) saturated before the server did.
    workers = max(1, min(args.workers, count))
    warmup = 6.0 + count * 0.5  # join, ICE, DTLS, first keyframes
    opened = time.monotonic() + warmup
    window = (opened, opened + args.seconds)
    spawn = mp.get_context("spawn")
    results = spawn.Queue()
    processes = [
        spawn.Process(
            target=worker,
            args=(base, room, list(range(w, count, workers)), clip, window, results),
            daemon=True,
        )
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    await asyncio.sleep(max(0.0, opened - time.monotonic()))
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    frames, delays, client_cpu = 0, [], 0.0
    for _ in processes:
        got_frames, got_delays, got_cpu = await asyncio.to_thread(results.get, True, 60)
        frames += got_frames
        delays.extend(got_delays)
        client_cpu += got_cpu
    for process in processes:
        await asyncio.to_thread(process.join, 30)
        if process.is_alive():
            process.kill()
    streams = count * min(count - 1, 1 + args.last_n)
    delays.sort()
    pick = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] * 1000 if delays else -1  # noqa: E731
    return {
        "venues": count,
        "video_streams": streams,
        "server_cores": cpu,
        "cores_per_venue": cpu / count,
        "cores_per_stream": cpu / streams,
        # Below 1.0 the clients or the box, not only the server, limited the run.
        "delivered": frames / args.seconds / (streams * FPS),
        "client_processes": workers,
        "client_cores": client_cpu / args.seconds,
        "delay_p50_ms": pick(0.5),
        "delay_p99_ms": pick(0.99),
    }


async def run_all(base: str, pid: int, args: argparse.Namespace, clip: list[bytes]) -> None:
    for _ in range(100):
        try:
            async with aiohttp.ClientSession() as s, s.get(base + "/healthz") as r:
                if r.status == 200:
                    break
        except aiohttp.ClientError:
            await asyncio.sleep(0.2)
    for count in args.venues or [4, 12]:
        result = await measure(base, pid, count, clip, args)
        print(json.dumps({k: round(v, 4) for k, v in result.items()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--venues", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--last-n", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--queue-frames", type=int, help="conference_queue_frames of the server")
    args = parser.parse_args()
    clip = encode_clip(args.width, args.height, 3)
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "unicomm.toml"
        port = free_port()
        config.write_text(
            f'[unicomm]\ndata_dir = "var"\nhttp_host = "127.0.0.1"\nhttp_port = {port}\n'
            f'sip_port = 0\nsip_tls_port = 0\nlog_level = "WARNING"\n'
            f"conference_last_n = {args.last_n}\nconference_ice_loopback = true\n"
            + (f"conference_queue_frames = {args.queue_frames}\n" if args.queue_frames else "")
        )
        os.environ["BENCH_CONFIG"] = str(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNICOMM_")}
        command = [UNICOMM, "--config", str(config)]
        subprocess.run([*command, "db", "upgrade"], check=True, env=env, capture_output=True)
        server = subprocess.Popen(
            [*command, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            asyncio.run(run_all(f"http://127.0.0.1:{port}", server.pid, args, clip))
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
