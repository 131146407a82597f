"""ffmpeg and ffprobe as subprocesses: probe, HLS transcodes, captures, stills.

Command lines are built with ``ffmpeg-python`` (pure argument building) and run
with :func:`asyncio.create_subprocess_exec`, so the event loop only waits on
pipes while ffmpeg does the work in its own process. ffmpeg is started with a
parent-death signal: a server killed mid-transcode does not leave an orphan
encoder writing into a folder that start-up recovery is about to delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg  # ffmpeg-python: builds argument lists, runs nothing here

from media import hls

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
# Enough of ffmpeg's stderr to explain a failure, small enough for a DB column.
ERROR_TAIL_CHARS = 4000
STREAM_TIMEOUT_US = 5_000_000
LIVE_ANALYZE_US = 1_000_000

ProgressCallback = Callable[[float], Awaitable[None]]


class MediaError(Exception):
    """Input ffmpeg cannot use; the message is fit to show to the person who sent it."""


class FfmpegError(MediaError):
    """ffmpeg exited with an error; ``stderr`` keeps the end of what it said."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


# ffprobe reads almost anything: text as ANSI art ("tty"), pictures as one-frame
# video. None of them is a programme.
NOT_PROGRAMME_FORMATS = {"tty", "image2", "bin", "xbin", "idf", "adf", "gif"}
STILL_OR_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf", "png", "bmp", "gif", "tiff", "webp"}
# Below this ffprobe only guessed (text reads as raw AMR at 26); real containers and
# elementary streams score 50 (MPEG-TS) to 100 (MP4).
MIN_PROBE_SCORE = 50


@dataclass(frozen=True)
class Probe:
    duration: float | None
    format_name: str
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    frame_rate: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    probe_score: int = 100

    @property
    def is_programme(self) -> bool:
        """Audio, or moving pictures: not text, not a still picture, not a guess."""
        if self.format_name in NOT_PROGRAMME_FORMATS or self.format_name.endswith("_pipe"):
            return False
        if self.probe_score < MIN_PROBE_SCORE:
            return False
        return self.has_audio or (self.has_video and self.video_codec not in STILL_OR_TEXT_CODECS)


def _rate(text: str | None) -> float:
    if not text or text in {"0/0", "0"}:
        return 0.0
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den) if float(den) else 0.0
    return float(text)


def parse_probe(text: str) -> Probe:
    """Read ``ffprobe -print_format json -show_format -show_streams`` output."""
    try:
        data = json.loads(text)
    except ValueError:
        raise MediaError("ffprobe gave no readable answer") from None
    streams: list[dict[str, Any]] = data.get("streams") or []
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fmt = data.get("format") or {}
    duration = fmt.get("duration") or (video or audio or {}).get("duration")
    frame_rate = 0.0
    if video is not None:
        frame_rate = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    return Probe(
        duration=float(duration) if duration not in (None, "N/A") else None,
        format_name=str(fmt.get("format_name", "")),
        has_video=video is not None,
        has_audio=audio is not None,
        width=int(video.get("width") or 0) if video else 0,
        height=int(video.get("height") or 0) if video else 0,
        frame_rate=frame_rate,
        video_codec=str(video.get("codec_name", "")) if video else "",
        audio_codec=str(audio.get("codec_name", "")) if audio else "",
        probe_score=int(fmt.get("probe_score", 100)),
    )


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1: the kernel kills ffmpeg when the server process dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


async def _spawn(args: list[str], *, stdin: bool = False) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
    except FileNotFoundError:
        raise MediaError(f"{args[0]} is not installed (Debian package ffmpeg)") from None


async def probe(source: str | Path, limit_seconds: float = 30.0) -> Probe:
    """What a file holds; :class:`MediaError` when it holds no audio or video."""
    args = [FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    args.append(str(source))
    process = await _spawn(args)
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit_seconds)
    except TimeoutError:
        await _stop(process)
        raise MediaError(f"ffprobe did not answer within {limit_seconds:.0f} s") from None
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit status {process.returncode}"
        raise MediaError(f"not a readable audio or video file: {reason}")
    result = parse_probe(out.decode(errors="replace"))
    if not result.has_video and not result.has_audio:
        raise MediaError("not a readable audio or video file: it holds neither audio nor video")
    if not result.is_programme:
        raise MediaError(
            f"not a readable audio or video file: it reads as {result.format_name or 'unknown'}"
            f"{' (' + result.video_codec + ')' if result.video_codec else ''}"
        )
    return result


class ProgressParser:
    """Turns ``-progress`` key=value lines into a percentage of a known duration."""

    def __init__(self, duration: float | None) -> None:
        self.duration = duration
        self._buffer = b""
        self.out_seconds = 0.0
        self.finished = False

    def feed(self, data: bytes) -> float | None:
        """Consume bytes; return the new percentage when a progress block completes."""
        self._buffer += data
        percent: float | None = None
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            key, _, value = line.decode(errors="replace").strip().partition("=")
            if key in ("out_time_us", "out_time_ms"):
                # Both keys carry microseconds (a historic ffmpeg quirk of out_time_ms).
                with contextlib.suppress(ValueError):
                    self.out_seconds = max(self.out_seconds, int(value) / 1_000_000)
            elif key == "progress":
                self.finished = value == "end"
                percent = self.percent
        return percent

    @property
    def percent(self) -> float:
        if self.finished:
            return 100.0
        if not self.duration:
            return 0.0
        return max(0.0, min(99.9, 100.0 * self.out_seconds / self.duration))


async def _stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _tail(data: bytes) -> str:
    return data.decode(errors="replace").strip()[-ERROR_TAIL_CHARS:]


async def run_ffmpeg(
    args: list[str],
    *,
    duration: float | None = None,
    on_progress: ProgressCallback | None = None,
    stop_at: Callable[[], bool] | None = None,
) -> None:
    """Run ffmpeg to the end; raise :class:`FfmpegError` with its stderr on failure.

    ``args`` start after the program name. ``stop_at`` is polled each second;
    when it says so, ffmpeg is asked to finish (``q`` on stdin), which closes its
    output properly (used to end a capture at the end of its window).
    Cancelling the calling task terminates ffmpeg.
    """
    command = [FFMPEG, "-hide_banner"] + (["-nostdin"] if stop_at is None else [])
    command += ["-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y", *args]
    process = await _spawn(command, stdin=stop_at is not None)
    assert process.stdout is not None and process.stderr is not None
    parser = ProgressParser(duration)
    stderr_chunks: list[bytes] = []

    async def read_stderr() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            stderr_chunks.append(chunk)
            # Only the end matters for the error message.
            while sum(len(c) for c in stderr_chunks) > ERROR_TAIL_CHARS * 4:
                stderr_chunks.pop(0)

    async def read_progress() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(4096):
            percent = parser.feed(chunk)
            if percent is not None and on_progress is not None:
                await on_progress(percent)

    async def watch_stop() -> None:
        assert stop_at is not None and process.stdin is not None
        while process.returncode is None:
            if stop_at():
                with contextlib.suppress(ConnectionError, BrokenPipeError):
                    process.stdin.write(b"q")
                    await process.stdin.drain()
                    process.stdin.close()
                return
            await asyncio.sleep(0.2)

    readers = [asyncio.ensure_future(read_stderr()), asyncio.ensure_future(read_progress())]
    watcher = asyncio.ensure_future(watch_stop()) if stop_at is not None else None
    try:
        await asyncio.gather(*readers)
        returncode = await process.wait()
    except BaseException:
        await _stop(process)
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        for reader in readers:
            reader.cancel()
    if returncode != 0:
        stderr = _tail(b"".join(stderr_chunks))
        last = stderr.splitlines()[-1] if stderr else f"exit status {returncode}"
        raise FfmpegError(f"ffmpeg failed: {last}", stderr, returncode)


def _arguments(stream: Any) -> list[str]:
    """ffmpeg-python's argument list without the program name and its trailing -y."""
    args: list[str] = stream.get_args()
    return args


@dataclass(frozen=True)
class Stills:
    """The poster and the thumbnail strip of a programme, and where they are taken."""

    poster: Path
    poster_at: float
    thumbs: Path
    every: float


def stills_plan(out_dir: Path, duration: float | None, segment_seconds: int) -> Stills | None:
    """A poster 10% in (at most 5 s) and about 20 thumbnails; None without a duration."""
    if not duration or duration <= 0:
        return None
    return Stills(
        poster=out_dir / "poster.jpg",
        poster_at=min(duration * 0.1, 5.0),
        thumbs=out_dir / "thumbs",
        every=max(float(segment_seconds), duration / 20),
    )


@dataclass(frozen=True)
class VideoJob:
    """The HLS command for video, the ladder it produces and the stills it writes too."""

    args: list[str]
    rungs: list[hls.Rung]
    stills: Stills | None = None


def hls_video_args(
    source: Path,
    out_dir: Path,
    source_probe: Probe,
    heights: list[int],
    segment_seconds: int,
    preset: str,
    *,
    stills: Stills | None = None,
) -> VideoJob:
    """One decode, split into the ladder; each rendition with GOP = segment length.

    Key frames are forced on segment boundaries and scene-cut key frames are off
    (``sc_threshold 0``), so every rendition cuts at the same instants and a
    player can switch rungs at any segment.

    With ``stills``, the poster and the thumbnails are two more outputs of the same
    decode (the same frames :func:`poster_args` and :func:`thumbnails_args` give),
    rather than two more passes over the source; ``stills.thumbs`` must exist.
    """
    rungs = hls.plan_ladder(source_probe.height, heights)
    frame_rate = source_probe.frame_rate if 1 <= source_probe.frame_rate <= 120 else 25.0
    gop = hls.gop_frames(frame_rate, segment_seconds)
    source_input = ffmpeg.input(str(source))
    branches = len(rungs) + (2 if stills is not None else 0)
    split = source_input.video.filter_multi_output("split", branches)
    streams: list[Any] = []
    options: dict[str, Any] = {
        "c:v": "libx264",
        "preset": preset,
        "profile:v": "high",
        "pix_fmt": "yuv420p",
        "g": gop,
        "keyint_min": gop,
        "sc_threshold": 0,
        "force_key_frames": f"expr:gte(t,n_forced*{segment_seconds})",
        "f": "hls",
        "hls_time": segment_seconds,
        "hls_playlist_type": "vod",
        "hls_flags": "independent_segments",
        "hls_segment_type": "mpegts",
        "hls_segment_filename": str(out_dir / "v%v" / "seg%05d.ts"),
    }
    stream_map = []
    for index, rung in enumerate(rungs):
        scaled = split[index].filter("scale", -2, rung.height)
        streams.append(scaled)
        options[f"b:v:{index}"] = f"{rung.video_kbps}k"
        options[f"maxrate:v:{index}"] = f"{int(rung.video_kbps * 1.2)}k"
        options[f"bufsize:v:{index}"] = f"{rung.video_kbps * 2}k"
        if source_probe.has_audio:
            streams.append(source_input.audio)
            stream_map.append(f"v:{index},a:{index},name:{index}")
        else:
            stream_map.append(f"v:{index},name:{index}")
    if source_probe.has_audio:
        options.update({"c:a": "aac", "b:a": f"{hls.AUDIO_KBPS}k", "ac": 2, "ar": 48000})
    options["var_stream_map"] = " ".join(stream_map)
    output = ffmpeg.output(*streams, str(out_dir / "v%v" / hls.MEDIA_NAME), **options)
    if stills is None:
        return VideoJob(_arguments(output), rungs)
    thumbs = _thumbnails(split[len(rungs)], stills.thumbs, stills.every)
    # The first frame at or after the poster's instant: what an accurate -ss seek gives.
    poster = _poster(
        split[len(rungs) + 1].filter("select", f"gte(t,{stills.poster_at:.3f})"), stills.poster
    )
    return VideoJob(_arguments(ffmpeg.merge_outputs(output, thumbs, poster)), rungs, stills)


def hls_audio_args(source: Path, out_dir: Path, segment_seconds: int) -> list[str]:
    """Radio: AAC-LC only, one rendition in ``a0/``."""
    output = ffmpeg.input(str(source)).audio.output(
        str(out_dir / "a0" / hls.MEDIA_NAME),
        **{
            "c:a": "aac",
            "b:a": f"{hls.RADIO_AUDIO_KBPS}k",
            "ac": 2,
            "ar": 48000,
            "f": "hls",
            "hls_time": segment_seconds,
            "hls_playlist_type": "vod",
            "hls_segment_type": "mpegts",
            "hls_segment_filename": str(out_dir / "a0" / "seg%05d.ts"),
        },
    )
    return _arguments(output)


def _poster(video: Any, poster: Path) -> Any:
    return video.filter("scale", -2, 360).output(str(poster), vframes=1, **{"q:v": 3})


def _thumbnails(video: Any, folder: Path, every_seconds: float) -> Any:
    return (
        video.filter("fps", fps=f"1/{every_seconds:.3f}")
        .filter("scale", 160, -2)
        .output(str(folder / "thumb%03d.jpg"), **{"q:v": 5})
    )


def poster_args(source: Path, poster: Path, at_seconds: float) -> list[str]:
    """The poster on its own (a programme whose duration ffprobe could not tell)."""
    return _arguments(_poster(ffmpeg.input(str(source), ss=f"{at_seconds:.3f}").video, poster))


def thumbnails_args(source: Path, folder: Path, every_seconds: float) -> list[str]:
    """Small stills at a fixed interval, for the scrubbing strip of the player."""
    return _arguments(_thumbnails(ffmpeg.input(str(source)).video, folder, every_seconds))


def input_timeout_options(url: str) -> dict[str, Any]:
    """Options that make a dead stream fail in seconds instead of hanging forever."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme in {"http", "https", "rtmp", "rtmps", "tcp"}:
        return {"rw_timeout": STREAM_TIMEOUT_US}
    if scheme in {"udp", "rtp", "srt"}:
        return {"timeout": STREAM_TIMEOUT_US}
    if scheme == "rtsp":
        return {"timeout": STREAM_TIMEOUT_US, "rtsp_transport": "tcp"}
    return {}


def capture_args(url: str, out_path: Path, max_seconds: float) -> list[str]:
    """Copy a live stream into MPEG-TS as it comes (no re-encode while recording).

    Probing is capped at 1 s of stream: ffmpeg's default (5 s) is 5 s of *wall
    time* on a live source, which would cut that much off every reconnection.
    """
    source = ffmpeg.input(url, analyzeduration=LIVE_ANALYZE_US, **input_timeout_options(url))
    output = ffmpeg.output(
        source,
        str(out_path),
        t=f"{max(0.1, max_seconds):.3f}",
        c="copy",
        f="mpegts",
        **{"map": "0:v?"},
    )
    args = _arguments(output)
    # ffmpeg-python writes one -map; the audio one (optional, '?') is added by hand.
    index = args.index("-map")
    args[index + 2 : index + 2] = ["-map", "0:a?"]
    return args


def concat_args(list_file: Path, out_path: Path) -> list[str]:
    """Join the parts of a capture (the stream dropped and came back) into one file."""
    output = ffmpeg.input(str(list_file), f="concat", safe=0).output(
        str(out_path), c="copy", f="mpegts"
    )
    return _arguments(output)


def concat_list(parts: list[Path]) -> str:
    def quote(path: Path) -> str:
        return "'" + str(path).replace("'", "'\\''") + "'"

    return "".join(f"file {quote(p)}\n" for p in parts)


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
