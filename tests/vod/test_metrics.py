"""News on demand on the server's /metrics: they appear, and move as the service works."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import Staff
from prometheus_client.parser import text_string_to_metric_families
from test_api import add_station, upload, wait_job

from media import hls

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(staff: Staff) -> tuple[str, Samples]:
    response = await staff.client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def settled(staff: Staff, check: Callable[[Samples], bool], limit: float = 10) -> Samples:
    """The gauges read from the database follow shortly after a change."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        _, samples = await scrape(staff)
        if check(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.2)


async def test_vod_metrics_appear_and_move(staff: Staff, tv_bytes: bytes) -> None:
    text, _ = await scrape(staff)
    for name in (
        "unicomm_vod_jobs",
        "unicomm_vod_items",
        "unicomm_vod_stored_bytes",
        "unicomm_vod_transcodes_total",
        "unicomm_vod_transcode_seconds",
        "unicomm_vod_transcoded_media_seconds_total",
        "unicomm_vod_media_requests_total",
        "unicomm_vod_media_bytes_total",
        "unicomm_vod_views_total",
    ):
        assert f"# HELP {name} " in text, name
    empty = await settled(staff, lambda s: ("unicomm_vod_items", ()) in s)
    assert value(empty, "unicomm_vod_items") == 0
    assert value(empty, "unicomm_vod_stored_bytes") == 0
    assert value(empty, "unicomm_vod_jobs", state="queued") == 0

    # A transcode: the job is counted, then the item and its bytes.
    await add_station(staff)
    job = await (await upload(staff, tv_bytes)).json()
    assert (await wait_job(staff, job["job_id"]))["state"] == "done"
    after = await settled(staff, lambda s: value(s, "unicomm_vod_items") == 1)
    assert value(after, "unicomm_vod_items") == 1
    assert value(after, "unicomm_vod_jobs", state="done") == 1
    assert value(after, "unicomm_vod_jobs", state="queued") == 0
    assert value(after, "unicomm_vod_jobs", state="running") == 0
    assert value(after, "unicomm_vod_jobs", state="failed") == 0
    item = (await (await staff.client.get("/api/vod/items", headers=staff.viewer)).json())[0]
    assert value(after, "unicomm_vod_stored_bytes") > 10_000
    assert value(after, "unicomm_vod_transcodes_total", result="done") == 1
    assert value(after, "unicomm_vod_transcode_seconds_count", result="done") == 1
    assert value(after, "unicomm_vod_transcode_seconds_sum", result="done") > 0
    transcoded = value(after, "unicomm_vod_transcoded_media_seconds_total")
    assert abs(transcoded - item["duration_seconds"]) < 0.01 and transcoded > 5

    # Playing it: a view, playlists and a segment range, by staff and by a signed link.
    master = await staff.client.get(item["play_url"], headers=staff.viewer)
    master_size = len(await master.read())
    variant = hls.parse_master((await master.read()).decode()).variants[0].uri
    base = item["play_url"].rsplit("/", 1)[0]
    playlist = await staff.client.get(f"{base}/{variant}", headers=staff.viewer)
    media = hls.parse_media(await playlist.text())
    playlist_size = len(await playlist.read())
    segment_url = f"{base}/{variant.rsplit('/', 1)[0]}/{media.segments[0].uri}"
    segment = await staff.client.get(segment_url, headers={**staff.viewer, "Range": "bytes=0-99"})
    assert segment.status == 206 and len(await segment.read()) == 100
    link = await staff.client.post(f"/api/vod/items/{item['id']}/link", headers=staff.editor)
    signed = await staff.client.get((await link.json())["url"])
    assert signed.status == 200
    _, played = await scrape(staff)
    assert value(played, "unicomm_vod_views_total") == 2
    assert value(played, "unicomm_vod_media_requests_total", kind="playlist", access="staff") == 2
    assert value(played, "unicomm_vod_media_requests_total", kind="playlist", access="signed") == 1
    assert value(played, "unicomm_vod_media_requests_total", kind="segment", access="staff") == 1
    assert value(played, "unicomm_vod_media_bytes_total", kind="segment") == 100
    assert (
        value(played, "unicomm_vod_media_bytes_total", kind="playlist")
        == 2 * master_size + playlist_size
    )

    # Deleting it: the catalogue gauges go back down.
    deleted = await staff.client.delete(f"/api/vod/items/{item['id']}", headers=staff.editor)
    assert deleted.status == 200
    gone = await settled(staff, lambda s: value(s, "unicomm_vod_items") == 0)
    assert value(gone, "unicomm_vod_items") == 0
    assert value(gone, "unicomm_vod_stored_bytes") == 0
