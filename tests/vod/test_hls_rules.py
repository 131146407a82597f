"""Sans-I/O rules: the HLS ladder and playlists, retention decisions, capture windows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from media import ffmpeg, hls
from vod import retention, windows

UTC = dt.UTC


def test_ladder_keeps_only_rungs_not_above_the_source() -> None:
    assert [r.height for r in hls.plan_ladder(1080, [720, 480, 240])] == [720, 480, 240]
    assert [r.height for r in hls.plan_ladder(576, [720, 480, 240])] == [480, 240]
    assert [r.height for r in hls.plan_ladder(240, [720, 480, 240])] == [240]
    # Smaller than every rung: one rendition at the source's own (even) height.
    assert [r.height for r in hls.plan_ladder(181, [720, 480, 240])] == [180]
    with pytest.raises(ValueError):
        hls.plan_ladder(0, [720])


def test_gop_matches_the_segment_length() -> None:
    assert hls.gop_frames(25, 6) == 150
    assert hls.gop_frames(29.97, 2) == 60
    with pytest.raises(ValueError):
        hls.gop_frames(0, 6)


def test_master_playlist_round_trips_best_rendition_first() -> None:
    master = hls.MasterPlaylist(
        [
            hls.Variant("v1/index.m3u8", 500_000, "avc1.64001f,mp4a.40.2", (426, 240)),
            hls.Variant(
                "v0/index.m3u8", 2_900_000, "avc1.64001f,mp4a.40.2", (1280, 720), 25.0, 2_500_000
            ),
        ]
    )
    text = master.render()
    assert text.startswith("#EXTM3U\n")
    assert text.index("v0/index.m3u8") < text.index("v1/index.m3u8")
    parsed = hls.parse_master(text)
    assert [v.uri for v in parsed.variants] == ["v0/index.m3u8", "v1/index.m3u8"]
    assert parsed.variants[0].resolution == (1280, 720)
    assert parsed.variants[0].codecs == "avc1.64001f,mp4a.40.2"  # the comma stays inside quotes
    assert parsed.variants[0].average_bandwidth == 2_500_000


def test_media_playlist_parse_and_checks() -> None:
    playlist = hls.MediaPlaylist(
        target_duration=2,
        segments=[hls.Segment("seg0.ts", 2.0), hls.Segment("seg1.ts", 1.4)],
        ended=True,
        playlist_type="VOD",
    )
    parsed = hls.parse_media(playlist.render())
    assert parsed.duration == pytest.approx(3.4)
    assert parsed.ended and parsed.playlist_type == "VOD"
    with pytest.raises(hls.PlaylistError):
        hls.parse_media("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:4.0,\nseg.ts\n")
    with pytest.raises(hls.PlaylistError):
        hls.parse_media("not a playlist")
    with pytest.raises(hls.PlaylistError):
        hls.parse_media("#EXTM3U\n#EXTINF:2.0,\nseg.ts\n")  # no target duration
    with pytest.raises(hls.PlaylistError):
        hls.parse_master("#EXTM3U\n#EXT-X-TARGETDURATION:2\n")


def test_bandwidth_is_the_peak_segment_rate() -> None:
    playlist = hls.MediaPlaylist(2, [hls.Segment("a", 2.0), hls.Segment("b", 1.0)])
    peak, average = hls.measured_bandwidth([250_000, 250_000], playlist)
    assert peak == 2_000_000 and average == pytest.approx(1_333_334, abs=1)


def test_mime_types() -> None:
    assert hls.mime_type("master.m3u8") == "application/vnd.apple.mpegurl"
    assert hls.mime_type("v0/seg00001.ts") == "video/mp2t"
    assert hls.mime_type("poster.jpg") == "image/jpeg"
    assert hls.mime_type("x.bin") == "application/octet-stream"


def test_progress_parser_reads_ffmpeg_progress_blocks() -> None:
    parser = ffmpeg.ProgressParser(duration=10.0)
    assert parser.feed(b"frame=10\nout_time_us=2500000\n") is None
    assert parser.feed(b"progress=continue\nout_time_us=5000") == pytest.approx(25.0)
    assert parser.feed(b"000\nprogress=continue\n") == pytest.approx(50.0)
    assert parser.feed(b"progress=end\n") == 100.0


def test_probe_parsing_ignores_cover_art() -> None:
    text = """{"format": {"format_name": "mp3", "duration": "12.5"},
      "streams": [{"codec_type": "audio", "codec_name": "mp3"},
                  {"codec_type": "video", "codec_name": "mjpeg",
                   "disposition": {"attached_pic": 1}}]}"""
    probe = ffmpeg.parse_probe(text)
    assert probe.has_audio and not probe.has_video and probe.duration == 12.5


def candidate(
    item_id: int, broadcast: dt.datetime, days: int = 30, size: int = 100
) -> retention.Candidate:
    return retention.Candidate(
        item_id, f"k{item_id}", broadcast, retention.expires_at(broadcast, days), size
    )


def test_expiry_after_broadcast_spares_items_being_played() -> None:
    now = dt.datetime(2026, 11, 21, 12, tzinfo=UTC)
    day31 = candidate(1, now - dt.timedelta(days=31))
    day29 = candidate(2, now - dt.timedelta(days=29))
    short = candidate(3, now - dt.timedelta(days=8), days=7)
    playing = candidate(4, now - dt.timedelta(days=40))
    gone = retention.expired([day31, day29, short, playing], now, busy={"k4"})
    assert [c.item_id for c in gone] == [1, 3]


def test_watermark_frees_oldest_first_until_above() -> None:
    now = dt.datetime(2026, 11, 21, tzinfo=UTC)
    items = [candidate(i, now - dt.timedelta(days=10 - i), size=100) for i in range(1, 6)]
    disk = retention.DiskUsage(total_bytes=10_000, free_bytes=800)  # 8 % free
    chosen = retention.to_free_disk(items, disk, watermark_percent=10.0)
    assert [c.item_id for c in chosen] == [1, 2]  # 200 bytes brings it to 10 %
    assert retention.to_free_disk(items, disk, 10.0, busy={"k1"})[0].item_id == 2
    assert retention.to_free_disk(items, retention.DiskUsage(10_000, 5_000), 10.0) == []


def test_daily_windows_are_wall_clock_in_the_zone() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    since = dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # 18:00 in Beijing
    found = windows.windows_between(
        "19:00", 1800, "1234567", zone, since, since + dt.timedelta(hours=26)
    )
    assert [w.starts_at for w in found] == [
        dt.datetime(2026, 11, 21, 11, 0, tzinfo=UTC),
        dt.datetime(2026, 11, 22, 11, 0, tzinfo=UTC),
    ]
    assert found[0].ends_at - found[0].starts_at == dt.timedelta(minutes=30)
    # 2026-11-21 is a Saturday (6): a weekdays-only schedule skips the weekend.
    assert (
        windows.windows_between("19:00", 1800, "12345", zone, since, since + dt.timedelta(hours=26))
        == []
    )
    with pytest.raises(ValueError):
        windows.parse_time_of_day("25:00")
