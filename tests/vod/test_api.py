"""Upload, catalogue and serving over HTTP, through the real application."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from conftest import Staff
from sqlalchemy import func, select
from vod_media import files_under

from media import hls
from vod.models import Item, Job


async def wait_job(staff: Staff, job_id: int, limit: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        response = await staff.client.get("/api/vod/jobs", headers=staff.viewer)
        jobs = {job["id"]: job for job in await response.json()}
        if jobs[job_id]["state"] in ("done", "failed"):
            return jobs[job_id]
        await asyncio.sleep(0.3)
    raise AssertionError("job did not finish")


async def add_station(staff: Staff, code: str = "CCTV", kind: str = "tv") -> None:
    response = await staff.client.post(
        "/api/vod/stations",
        json={"code": code, "name": "中央电视台", "level": "central", "kind": kind},
        headers=staff.editor,
    )
    assert response.status == 201, await response.text()


async def upload(staff: Staff, data: bytes, **params: str) -> Any:
    query = {"station": "CCTV", "title": "新闻联播", "filename": "news.mp4", **params}
    return await staff.client.post(
        "/api/vod/uploads",
        params=query,
        data=data,
        headers={**staff.editor, "Content-Type": "application/octet-stream"},
    )


async def test_upload_to_catalogue_to_playback(staff: Staff, tv_bytes: bytes) -> None:
    await add_station(staff)
    broadcast = "2026-11-20T19:00:00+08:00"
    response = await upload(
        staff, tv_bytes, broadcast_at=broadcast, tags="要闻,联播", programme="新闻联播"
    )
    assert response.status == 202, await response.text()
    job = await wait_job(staff, (await response.json())["job_id"])
    assert job["state"] == "done" and job["progress"] == 100.0

    listed = await staff.client.get(
        "/api/vod/items", params={"date": "2026-11-20", "station": "CCTV"}, headers=staff.viewer
    )
    items = await listed.json()
    assert [i["title"] for i in items] == ["新闻联播"]
    item = items[0]
    assert item["tags"] == ["要闻", "联播"] and item["level"] == "central"
    assert dt.datetime.fromisoformat(item["broadcast_at"]) == dt.datetime.fromisoformat(broadcast)
    assert (
        await (
            await staff.client.get(
                "/api/vod/items", params={"date": "2026-11-21"}, headers=staff.viewer
            )
        ).json()
    ) == []

    # Media: playlist and segment types, Range, cache headers, view counts.
    master = await staff.client.get(item["play_url"], headers=staff.viewer)
    assert master.status == 200
    assert master.headers["Content-Type"] == hls.PLAYLIST_MIME
    assert "max-age" in master.headers["Cache-Control"]
    variant = hls.parse_master(await master.text()).variants[0].uri
    base = item["play_url"].rsplit("/", 1)[0]
    playlist = hls.parse_media(
        await (await staff.client.get(f"{base}/{variant}", headers=staff.viewer)).text()
    )
    segment_url = f"{base}/{variant.rsplit('/', 1)[0]}/{playlist.segments[0].uri}"
    whole = await staff.client.get(segment_url, headers=staff.viewer)
    assert whole.headers["Content-Type"] == "video/mp2t"
    assert "immutable" in whole.headers["Cache-Control"]
    body = await whole.read()
    ranged = await staff.client.get(segment_url, headers={**staff.viewer, "Range": "bytes=188-375"})
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 188-375/{len(body)}"
    assert await ranged.read() == body[188:376]
    poster = await staff.client.get(item["poster_url"], headers=staff.viewer)
    assert poster.headers["Content-Type"] == "image/jpeg"
    again = await staff.client.get(f"/api/vod/items/{item['id']}", headers=staff.viewer)
    assert (await again.json())["views"] == 1

    # Without a login: refused; with a signed link: served, until it expires or is altered.
    assert (await staff.client.get(item["play_url"])).status == 401
    link = await staff.client.post(f"/api/vod/items/{item['id']}/link", headers=staff.editor)
    signed = (await link.json())["url"]
    kiosk = await staff.client.get(signed)
    assert kiosk.status == 200 and kiosk.headers["Content-Type"] == hls.PLAYLIST_MIME
    assert (await staff.client.get(signed.rsplit("/", 1)[0] + "/" + variant)).status == 200
    parts = signed.split("/")
    tampered = "/".join([*parts[:4], "0" * 32, *parts[5:]])
    assert (await staff.client.get(tampered)).status == 403
    expired = "/".join([*parts[:3], "1000", *parts[4:]])
    assert (await staff.client.get(expired)).status == 403
    assert (await staff.client.get(f"{base}/../../secret_key", headers=staff.viewer)).status == 404

    js = await staff.client.get("/vod/static/hls.min.js")
    assert js.status == 200 and js.headers["Content-Type"].startswith("text/javascript")


async def test_oversized_upload_is_refused_and_leaves_nothing(staff: Staff) -> None:
    await add_station(staff)
    too_big = b"\x47" * (3 * 1024 * 1024)  # the limit here is 2 MB
    response = await upload(staff, too_big)
    assert response.status == 413 and "2 MB" in (await response.json())["error"]

    async def chunked() -> Any:  # no Content-Length: the streamed count stops it
        for _ in range(3):
            yield b"\x47" * (1024 * 1024)

    streamed = await upload(staff, chunked())  # type: ignore[arg-type]
    assert streamed.status == 413
    await assert_nothing_left(staff)


async def test_non_media_and_corrupt_uploads_get_a_clear_error(
    staff: Staff, tv_bytes: bytes
) -> None:
    await add_station(staff)
    text = await upload(staff, "这不是视频\n".encode() * 500, filename="notes.txt")
    assert text.status == 422
    assert "not a readable audio or video file" in (await text.json())["error"]
    data = bytearray(tv_bytes)
    data[: len(data) // 2] = bytes(len(data) // 2)
    corrupt = await upload(staff, bytes(data))
    assert corrupt.status == 422
    empty = await upload(staff, b"")
    assert empty.status == 422
    unknown = await upload(staff, tv_bytes, station="NOPE")
    assert unknown.status == 404
    await assert_nothing_left(staff)


async def test_only_editors_upload_and_staff_browse(staff: Staff, tv_bytes: bytes) -> None:
    await add_station(staff)
    refused = await staff.client.post(
        "/api/vod/uploads",
        params={"station": "CCTV", "title": "x"},
        data=b"x",
        headers=staff.viewer,
    )
    assert refused.status == 403
    assert (await staff.client.get("/api/vod/items")).status == 401
    assert (await staff.client.get("/api/vod/items", headers=staff.viewer)).status == 200
    bad = await staff.client.get(
        "/api/vod/items", params={"date": "yesterday"}, headers=staff.viewer
    )
    assert bad.status == 422
    spec = await (await staff.client.get("/api/openapi.json")).json()
    assert (
        "application/octet-stream"
        in spec["paths"]["/api/vod/uploads"]["post"]["requestBody"]["content"]
    )


async def assert_nothing_left(staff: Staff) -> None:
    async with staff.ctx.db.session() as session:
        assert await session.scalar(select(func.count(Item.id))) == 0
        assert await session.scalar(select(func.count(Job.id))) == 0
    assert files_under(staff.service.root) == []


async def test_stations_schedules_and_captures_through_the_api(staff: Staff) -> None:
    created = await staff.client.post(
        "/api/vod/stations",
        json={
            "code": "CITYFM",
            "name": "市人民广播电台",
            "level": "city",
            "kind": "radio",
            "stream_url": "udp://239.1.1.1:5000",
            "retention_days": 14,
        },
        headers=staff.editor,
    )
    assert created.status == 201
    schedule = await staff.client.post(
        "/api/vod/stations/CITYFM/schedules",
        json={"programme": "早间新闻", "start_time": "07:00", "duration_seconds": 1800},
        headers=staff.editor,
    )
    assert schedule.status == 201, await schedule.text()
    bad = await staff.client.post(
        "/api/vod/stations/CITYFM/schedules",
        json={"programme": "x", "start_time": "7am", "duration_seconds": 0},
        headers=staff.editor,
    )
    assert bad.status == 422
    assert {f["field"] for f in (await bad.json())["detail"]} == {"start_time", "duration_seconds"}
    starts = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    booked = await staff.client.post(
        "/api/vod/captures",
        json={
            "station": "CITYFM",
            "title": "特别报道",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + dt.timedelta(minutes=30)).isoformat(),
        },
        headers=staff.editor,
    )
    assert booked.status == 201 and (await booked.json())["state"] == "scheduled"
    over = await staff.client.post(
        "/api/vod/captures",
        json={
            "station": "CITYFM",
            "title": "过去",
            "starts_at": "2020-01-01T00:00:00Z",
            "ends_at": "2020-01-01T00:30:00Z",
        },
        headers=staff.editor,
    )
    assert over.status == 422 and "already over" in (await over.json())["error"]
    page = await staff.client.get("/console/vod", headers=staff.viewer)
    html = await page.text()
    assert page.status == 200 and "特别报道" in html and "待录制" in html
