"""Helpers of the news-on-demand tests: short synthetic media and fast transcoder settings.

Clips are a few seconds of 320x240 test picture and tone, transcoded with the
ultrafast preset and 2-second segments, so the whole folder runs in minutes.
(Imported as ``vod_media``: tests/vod/conftest.py puts this folder on the path.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from core.config import Settings, load_settings

FAST = {
    "vod_x264_preset": "ultrafast",
    "vod_segment_seconds": 2,
    "vod_ladder": [720, 480, 240, 144],
}
FAST_ENV = {
    "UNICOMM_VOD_X264_PRESET": "ultrafast",
    "UNICOMM_VOD_SEGMENT_SECONDS": "2",
    "UNICOMM_VOD_LADDER": "[720, 480, 240, 144]",
}
SEGMENT = 2


def make_clip(
    path: Path,
    seconds: float = 6.0,
    *,
    video: bool = True,
    audio: bool = True,
    size: str = "320x240",
) -> Path:
    args = ["ffmpeg", "-v", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac"]
    subprocess.run([*args, str(path)], check=True, timeout=60)
    return path


def vod_settings(tmp_path: Path, database_url: str | None = None, **overrides: object) -> Settings:
    os.environ.pop("UNICOMM_CONFIG", None)
    values: dict[str, object] = {**FAST, **overrides}
    return load_settings(
        None,
        data_dir=str(tmp_path / "var"),
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'unicomm.db'}",
        **values,
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


class LiveStation:
    """A TV or radio "station": ffmpeg sending test picture and tone over HTTP in real time.

    ``-listen 1`` makes ffmpeg an HTTP server for one client, so stopping the
    process is a stream that drops; starting it again on the same port is the
    stream coming back.
    """

    def __init__(self, port: int, *, video: bool = True) -> None:
        self.port = port
        self.video = video
        self.url = f"http://127.0.0.1:{port}/live.ts"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveStation:
        args = ["ffmpeg", "-v", "error", "-re"]
        if self.video:
            args += ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        if self.video:
            args += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25"]
            args += ["-pix_fmt", "yuv420p"]
        args += ["-c:a", "aac", "-f", "mpegts", "-listen", "1", self.url]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
