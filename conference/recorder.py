"""Recording a meeting: the main venue's picture as forwarded, every venue's audio mixed.

The SFU does not encode, and neither does the recorder's picture path: it is one
more sink of the main venue's :class:`~conference.sfu.PublishedStream`, and the
encoded VP8/H264 frames are muxed as they are into Matroska. Audio is different:
a recording needs one mixed track, so each venue's Opus is decoded to PCM (one
file per venue, silence written for the time it sent nothing) and the files are
mixed by an ffmpeg ``amix`` after stop. Everything after the event loop's cheap
``push`` (muxing, Opus decoding, file writes) runs in the recorder's own thread;
the final mix runs as an ffmpeg subprocess (architecture rule 4).

Picture and sound are placed on one clock, the recorder's arrival time, rather
than the publishers' RTP clocks: the picture switches between publishers whose
RTP clocks are unrelated, and a venue's audio may start, stop (muted by the
chair) or leave at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import av
import structlog

from conference.sfu import EncodedFrame, PublishedStream

log = structlog.get_logger("conference.recorder")

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
SAMPLE_RATE = 48_000
BYTES_PER_SAMPLE = 2  # s16 mono
# A venue's audio that falls this far behind the recording's clock (it sent nothing:
# not yet joined, muted by the chair, network gap) is caught up with silence.
GAP_SECONDS = 0.12
# Frames waiting for the writer thread; beyond this the loop drops rather than grows.
QUEUE_LIMIT = 4000
MIX_TIMEOUT_SECONDS = 600.0


class RecordingError(Exception):
    pass


@dataclass
class _Video:
    data: bytes
    at: float  # seconds since the recording started
    keyframe: bool
    mime: str


@dataclass
class _Audio:
    venue: str
    data: bytes
    at: float


_Item = _Video | _Audio | None  # None: stop


class _Sink:
    """Stands where a subscriber's slot would: the stream pushes frames to it."""

    def __init__(self, recorder: MeetingRecorder, kind: str, venue: str) -> None:
        self.recorder = recorder
        self.kind = kind
        self.venue = venue
        self.source: PublishedStream | None = None

    def switch(self, source: PublishedStream | None) -> None:
        if source is self.source:
            return
        if self.source is not None:
            self.source.subscribers.discard(self)
        self.source = source
        if source is not None:
            source.subscribers.add(self)
            # The recording of a new main picture starts at its next keyframe: ask now.
            source.request_keyframe()

    def push(self, frame: EncodedFrame) -> None:
        source = self.source
        if source is None:
            return
        at = self.recorder.elapsed()
        if self.kind == "video":
            self.recorder.enqueue(_Video(frame.data, at, frame.keyframe, source.mime))
        else:
            self.recorder.enqueue(_Audio(self.venue, frame.data, at))


@dataclass
class _AudioTrack:
    path: Path
    handle: BinaryIO
    decoder: av.AudioCodecContext
    resampler: av.AudioResampler
    written: int = 0  # samples


@dataclass
class RecordingResult:
    path: Path
    started_at: float  # time.time() at start
    seconds: float
    has_video: bool
    venues: int


@dataclass
class MeetingRecorder:
    """One recording of one room, from :meth:`start` to :meth:`stop`."""

    room: str
    workdir: Path
    started_wall: float = field(default_factory=time.time)
    dropped: int = 0
    _started: float = field(default_factory=time.monotonic)
    _video_sink: _Sink | None = None
    _audio_sinks: dict[str, _Sink] = field(default_factory=dict)
    _queue: queue.Queue[_Item] = field(default_factory=lambda: queue.Queue(QUEUE_LIMIT))
    _thread: threading.Thread | None = None
    _error: BaseException | None = None
    # Written by the thread, read after it ended.
    _video_start: float | None = None
    _video_frames: int = 0
    _audio: dict[str, _AudioTrack] = field(default_factory=dict)
    _end: float = 0.0

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._video_sink = _Sink(self, "video", "")
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.room}", daemon=True)
        self._thread.start()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def enqueue(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    # -- what is recorded (called by the runtime on every layout change) --------------

    def follow(self, picture: PublishedStream | None, sound: dict[str, PublishedStream]) -> None:
        """Record ``picture`` (the main venue's video) and the audio of ``sound``'s venues."""
        if self._video_sink is None:
            return
        self._video_sink.switch(picture)
        for venue in list(self._audio_sinks):
            if venue not in sound:
                self._audio_sinks.pop(venue).switch(None)
        for venue, stream in sound.items():
            sink = self._audio_sinks.get(venue)
            if sink is None:
                sink = self._audio_sinks[venue] = _Sink(self, "audio", venue)
            sink.switch(stream)

    async def stop(self, output: Path) -> RecordingResult:
        """Stop taking frames, finish the files, mix the audio and mux into ``output``."""
        if self._video_sink is not None:
            self._video_sink.switch(None)
        for sink in self._audio_sinks.values():
            sink.switch(None)
        self._audio_sinks.clear()
        end = self.elapsed()
        # The stop marker must get through even if the queue is full.
        await asyncio.to_thread(self._queue.put, None)
        self._end = end
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise RecordingError(f"recording failed: {self._error}") from self._error
        return await self._mix(output, end)

    def discard(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        video_path = self.workdir / "picture.mkv"
        container: av.container.OutputContainer | None = None
        stream: av.video.stream.VideoStream | None = None
        need_keyframe = True
        last_pts = -1
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                if isinstance(item, _Audio):
                    self._write_audio(item)
                    continue
                if need_keyframe and not item.keyframe:
                    continue
                need_keyframe = False
                if container is None:
                    container, stream = _open_video(video_path, item)
                    self._video_start = item.at
                assert stream is not None and self._video_start is not None
                pts = max(last_pts + 90, round((item.at - self._video_start) * 90_000))
                last_pts = pts
                packet = av.Packet(item.data)
                packet.pts = packet.dts = pts
                packet.time_base = VIDEO_TIME_BASE
                packet.is_keyframe = item.keyframe
                packet.stream = stream
                container.mux(packet)
                self._video_frames += 1
            for track in self._audio.values():
                self._pad(track, self._end)
        except BaseException as exc:  # reported by stop(), in the event loop
            self._error = exc
            log.exception("conference.recording_failed", room=self.room)
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
            for track in self._audio.values():
                with contextlib.suppress(Exception):
                    track.handle.close()

    def _write_audio(self, item: _Audio) -> None:
        track = self._audio.get(item.venue)
        if track is None:
            path = self.workdir / f"sound-{len(self._audio)}.pcm"
            track = _AudioTrack(
                path,
                path.open("wb"),
                av.CodecContext.create("opus", "r"),
                av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE),
            )
            self._audio[item.venue] = track
        self._pad(track, item.at - GAP_SECONDS)
        try:
            frames = track.decoder.decode(av.Packet(item.data))
        except av.error.FFmpegError:
            return  # one damaged packet is a click, not a failed recording
        for frame in frames:
            for pcm in track.resampler.resample(frame):
                data = bytes(pcm.planes[0])[: pcm.samples * BYTES_PER_SAMPLE]
                track.handle.write(data)
                track.written += pcm.samples

    @staticmethod
    def _pad(track: _AudioTrack, until: float) -> None:
        missing = round(until * SAMPLE_RATE) - track.written
        if missing > 0:
            track.handle.write(bytes(missing * BYTES_PER_SAMPLE))
            track.written += missing

    # -- the final mix -----------------------------------------------------------------

    async def _mix(self, output: Path, end: float) -> RecordingResult:
        has_video = self._video_frames > 0
        # The file starts with the first picture; sound before it is cut to stay in sync.
        offset = (self._video_start or 0.0) if has_video else 0.0
        seconds = max(0.0, end - offset)
        if seconds < 0.5:
            raise RecordingError("nothing was recorded (no picture or sound reached the server)")
        args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        if has_video:
            args += ["-i", str(self.workdir / "picture.mkv")]
        tracks = [t for t in self._audio.values() if t.written > 0]
        for track in tracks:
            args += ["-ss", f"{offset:.3f}", "-f", "s16le", "-ar", str(SAMPLE_RATE)]
            args += ["-ac", "1", "-i", str(track.path)]
        first_audio = 1 if has_video else 0
        if not tracks:
            args += ["-f", "lavfi", "-t", f"{seconds:.3f}", "-i", "anullsrc=r=48000:cl=mono"]
            audio_label = f"{first_audio}:a"
        elif len(tracks) == 1:
            audio_label = f"{first_audio}:a"
        else:
            inputs = "".join(f"[{first_audio + i}:a]" for i in range(len(tracks)))
            # normalize=0: a venue speaking alone keeps its level instead of 1/N of it.
            mix = f"{inputs}amix=inputs={len(tracks)}:duration=longest:normalize=0[mixed]"
            args += ["-filter_complex", mix]
            audio_label = "[mixed]"
        if has_video:
            args += ["-map", "0:v", "-c:v", "copy"]
        args += ["-map", audio_label, "-c:a", "aac", "-b:a", "96k", "-ac", "1"]
        args += ["-t", f"{seconds:.3f}", "-f", "matroska", str(output)]
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), MIX_TIMEOUT_SECONDS)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            await asyncio.to_thread(output.unlink, missing_ok=True)
            raise
        if process.returncode != 0:
            await asyncio.to_thread(output.unlink, missing_ok=True)
            raise RecordingError(f"mixing failed: {stderr.decode(errors='replace').strip()}")
        return RecordingResult(output, self.started_wall, seconds, has_video, len(tracks))


def _open_video(
    path: Path, first: _Video
) -> tuple[av.container.OutputContainer, av.video.stream.VideoStream]:
    codec = "vp8" if first.mime.lower() == "video/vp8" else "h264"
    container = av.open(str(path), "w", format="matroska")
    stream = cast(av.video.stream.VideoStream, container.add_stream(codec))
    size = vp8_size(first.data) if codec == "vp8" else None
    if size is not None:
        # Matroska's header carries the picture size; H264's is read from its SPS.
        stream.width, stream.height = size
    stream.time_base = VIDEO_TIME_BASE
    return container, stream


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 key frame (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None
