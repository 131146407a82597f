"""The recorder without browsers: encoded VP8 frames muxed as they are, one venue's Opus
decoded with the gaps filled, a venue that never spoke left out of the mix."""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import subprocess
from pathlib import Path

import av

from conference.recorder import MeetingRecorder, vp8_size
from conference.sfu import PublishedStream

FPS = 20


def _vp8_frames(count: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 160, 120, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.gop_size = 10
    frames: list[bytes] = []
    for index in range(count):
        image = av.VideoFrame(160, 120, "yuv420p")
        for plane in image.planes:
            plane.update(bytes([(index * 9) % 255]) * plane.buffer_size)
        image.pts = index
        frames += [bytes(p) for p in codec.encode(image)]
    frames += [bytes(p) for p in codec.encode(None)]
    return frames


def _opus_tone(packets: int) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 48000, "mono", "s16"
    out: list[bytes] = []
    for index in range(packets):
        samples = b"".join(
            int(8000 * math.sin(2 * math.pi * 440 * (index * 960 + n) / 48000)).to_bytes(
                2, "little", signed=True
            )
            for n in range(960)
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(samples)
        frame.sample_rate, frame.pts = 48000, index * 960
        out += [bytes(p) for p in codec.encode(frame)]
    return out


async def test_recorder_muxes_frames_as_they_are_and_mixes_who_spoke(tmp_path: Path) -> None:
    video_frames = _vp8_frames(30)
    assert vp8_size(video_frames[0]) == (160, 120)
    tone = _opus_tone(80)
    picture = PublishedStream("video", "A")
    spoke, silent = PublishedStream("audio", "A"), PublishedStream("audio", "B")
    recorder = MeetingRecorder("room", tmp_path / "work")
    recorder.start()
    recorder.follow(picture, {"A": spoke, "B": silent})
    # A delta frame before the first keyframe is not recorded (it could not be decoded).
    picture.on_frame("video/VP8", video_frames[1], 0)
    opus = iter(tone)
    for index, data in enumerate(video_frames):
        picture.on_frame("video/VP8", data, index * 4500)
        if index >= 10:  # A's sound starts half a second late: silence before it
            for _ in range(2):
                spoke.on_frame("audio/opus", next(opus, tone[-1]), 0)
        await asyncio.sleep(1 / FPS)
    result = await recorder.stop(tmp_path / "out.mkv")
    assert picture.subscribers == set() and spoke.subscribers == set()
    assert result.has_video and result.venues == 1  # B sent nothing: not mixed
    assert 1.0 < result.seconds < 3.0

    _check_file(result.path, result.seconds, len(video_frames))
    recorder.discard()
    assert not (tmp_path / "work").exists()


def _check_file(path: Path, seconds: float, video_frames: int) -> None:
    probe = json.loads(
        subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-show_streams",
                "-show_format",
                "-of",
                "json",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}
    assert codecs == {"video": "vp8", "audio": "aac"}  # the picture copied, not re-encoded
    assert abs(float(probe["format"]["duration"]) - seconds) < 0.3
    frames = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert int(frames) == video_frames
    volumes = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-af",
            "volumedetect",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert float(volumes.split("max_volume:")[1].split("dB")[0]) > -20.0
