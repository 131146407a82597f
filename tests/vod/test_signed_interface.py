"""vod's narrow interface for other services: signed links served on another listener."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import Staff
from test_api import add_station, upload, wait_job

import vod
from media import hls


async def test_signed_links_on_another_listener(staff: Staff, tv_bytes: bytes) -> None:
    await add_station(staff)
    job = await (await upload(staff, tv_bytes)).json()
    assert (await wait_job(staff, job["job_id"]))["state"] == "done"
    items = await (await staff.client.get("/api/vod/items", headers=staff.viewer)).json()
    key = items[0]["play_url"].split("/")[3]
    main = staff.client.app
    assert main is not None

    # The link names the caller's prefix; the default one is vod's own route on the main app.
    path = vod.signed_media_path(main, key, prefix="/kiosk/vod/s")
    assert path is not None and path.startswith("/kiosk/vod/s/") and path.endswith("/master.m3u8")
    default = vod.signed_media_path(main, key)
    assert default is not None and default.startswith("/vod/s/")
    assert (await staff.client.get(default)).status == 200
    assert vod.signed_media_path(web.Application(), key) is None  # no vod here

    # A separate listener (the kiosks'): signed media only, nothing else of vod.
    other = web.Application()
    assert vod.add_signed_media_routes(main, other.router, "/kiosk/vod/s")
    assert not vod.add_signed_media_routes(web.Application(), other.router, "/x")
    async with TestClient(TestServer(other)) as client:
        master = await client.get(path)
        assert master.status == 200 and master.headers["Content-Type"] == hls.PLAYLIST_MIME
        assert master.headers["Cache-Control"].startswith("public")
        variant = hls.parse_master(await master.text()).variants[0].uri
        playlist = await client.get(path.rsplit("/", 1)[0] + "/" + variant)
        assert playlist.status == 200
        parts = path.split("/")  # ['', 'kiosk', 'vod', 's', expires, sig, key, 'master.m3u8']
        tampered = "/".join([*parts[:5], "0" * 32, *parts[6:]])
        assert (await client.get(tampered)).status == 403
        expired = "/".join([*parts[:4], "1000", *parts[5:]])
        assert (await client.get(expired)).status == 403
        for elsewhere in (default, f"/vod/media/{key}/master.m3u8", "/api/vod/items"):
            assert (await client.get(elsewhere)).status == 404, elsewhere

    found = vod.hls_js_path()
    assert found is not None and isinstance(found, Path) and found.name == "hls.min.js"
