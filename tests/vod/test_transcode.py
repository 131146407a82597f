"""Transcoding to HLS through the durable job queue, checked with ffprobe/ffmpeg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from vod_media import SEGMENT, files_under

from media import hls
from vod.models import Item, Job, JobState, Kind, Level
from vod.service import VodError, VodService, discard


def ffprobe_json(target: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(target),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def decode_fully(playlist: Path) -> None:
    """Every segment of the rendition decodes without an error."""
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(playlist), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def check_hls_item(folder: Path, expected_seconds: float, *, video: bool) -> hls.MasterPlaylist:
    master_path = folder / hls.MASTER_NAME
    master = hls.parse_master(master_path.read_text())
    probed = ffprobe_json(master_path)
    kinds = {s["codec_type"] for s in probed["streams"]}
    assert kinds == ({"video", "audio"} if video else {"audio"})
    for variant in master.variants:
        playlist = hls.parse_media((folder / variant.uri).read_text())
        assert playlist.ended and playlist.playlist_type == "VOD"
        assert abs(playlist.duration - expected_seconds) <= SEGMENT
        decode_fully(folder / variant.uri)
    return master


def first_frame_is_key(segment: Path) -> bool:
    frames = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
            str(segment),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return bool(frames) and frames[0].split(",")[0] == "1"


def write_bad_file(path: Path, kind: str, good_clip: Path) -> Path:
    if kind == "text":
        path.write_text("这不是视频 this is not a video\n" * 100)
    elif kind == "corrupt":
        data = bytearray(good_clip.read_bytes())
        data[: len(data) // 2] = b"\x00" * (len(data) // 2)  # header and half the frames gone
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"")
    return path


async def add_stations(vod: VodService) -> None:
    async with vod.db.session() as session:
        await vod.add_station(
            session, code="CCTV", name="中央电视台", level=Level.CENTRAL, kind=Kind.TV
        )
        await vod.add_station(
            session,
            code="CNR",
            name="中央人民广播电台",
            level=Level.CENTRAL,
            kind=Kind.RADIO,
            retention_days=7,
        )


async def import_and_run(vod: VodService, clip: Path, station: str, title: str) -> Item | None:
    job = await vod.import_file(clip, station_code=station, title=title, origin="cli", claim=True)
    return await vod.run_job(job)


async def test_tv_programme_becomes_an_adaptive_ladder(vod: VodService, tv_clip: Path) -> None:
    await add_stations(vod)
    item = await import_and_run(vod, tv_clip, "CCTV", "新闻联播")
    assert item is not None
    folder = vod.items / item.key
    master = check_hls_item(folder, 6.0, video=True)
    # 320x240 source and a 720/480/240/144 ladder: only the rungs not above it.
    assert sorted(v.resolution for v in master.variants) == [(192, 144), (320, 240)]
    assert all(v.codecs == "avc1.64001f,mp4a.40.2" for v in master.variants)
    assert item.duration_seconds == pytest.approx(6.0, abs=SEGMENT)
    assert item.has_poster and (folder / "poster.jpg").stat().st_size > 0
    assert item.thumbnails >= 2
    # Fixed GOP aligned to segments: every segment starts with a key frame.
    for segment in sorted((folder / "v0").glob("seg*.ts")):
        assert first_frame_is_key(segment), segment.name
    assert files_under(vod.incoming) == [] and files_under(vod.work) == []


async def test_radio_programme_is_audio_only_hls(vod: VodService, radio_clip: Path) -> None:
    await add_stations(vod)
    item = await import_and_run(vod, radio_clip, "CNR", "全国新闻联播")
    assert item is not None and item.kind is Kind.RADIO
    master = check_hls_item(vod.items / item.key, 6.0, video=False)
    assert [v.codecs for v in master.variants] == ["mp4a.40.2"]
    assert master.variants[0].resolution is None
    assert not item.has_poster
    # The station keeps its programmes 7 days, not the default 30.
    assert (item.expires_at - item.broadcast_at).days == 7


async def test_tv_station_with_audio_only_file_is_audio_only(
    vod: VodService, radio_clip: Path
) -> None:
    await add_stations(vod)
    item = await import_and_run(vod, radio_clip, "CCTV", "只有声音")
    assert item is not None
    check_hls_item(vod.items / item.key, 6.0, video=False)


@pytest.mark.parametrize("kind", ["text", "corrupt", "empty"])
async def test_bad_files_are_refused_with_a_reason_and_leave_nothing(
    vod: VodService, tv_clip: Path, tmp_path: Path, kind: str
) -> None:
    await add_stations(vod)
    bad = write_bad_file(tmp_path / f"bad-{kind}.mp4", kind, tv_clip)
    with pytest.raises(VodError) as refused:
        await import_and_run(vod, bad, "CCTV", "坏文件")
    assert "not a readable audio or video file" in str(refused.value) or "neither" in str(
        refused.value
    )
    async with vod.db.session() as session:
        assert await session.scalar(select(func.count(Item.id))) == 0
        assert await session.scalar(select(func.count(Job.id))) == 0
    assert files_under(vod.root) == []


async def test_a_transcode_that_fails_keeps_the_error_and_no_files(
    vod: VodService, tv_clip: Path
) -> None:
    """The source vanishes under a queued job: the job fails with ffmpeg's words."""
    await add_stations(vod)
    job = await vod.import_file(
        tv_clip, station_code="CCTV", title="坏流", origin="cli", claim=True
    )
    discard(job.source_path)
    assert await vod.run_job(job) is None
    async with vod.db.session() as session:
        failed = await session.get(Job, job.id)
        assert failed is not None and failed.state is JobState.FAILED
        assert "No such file or directory" in failed.error
        assert await session.scalar(select(func.count(Item.id))) == 0
    assert files_under(vod.root) == []
