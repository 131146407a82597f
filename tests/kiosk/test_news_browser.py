"""Headless Chromium as a kiosk plays a news clip from the VOD catalogue.

Through vod's narrow interface only: signed links mounted on the kiosk routes (main port
and the kiosks' own listener), hls.js served by the kiosk app, and the Service Worker
keeping the clip's playlists and segments so it plays with the server gone.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page
from support.browser import chromium, wait_for_expression
from support.processes import ServerProcess, run_cli
from support.servers import free_port

pytestmark = pytest.mark.browser

CURRENT_TIME = "document.querySelector('article video').currentTime"


def _cli(config: Path, *args: str) -> str:
    done = run_cli("--config", str(config), *args, cwd=config.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _make_clip(path: Path, seconds: int = 12) -> Path:
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"),
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


async def _api(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with session.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        assert response.status < 300, body
        return body


async def _pair(page: Page, url: str, config: Path, name: str) -> None:
    await page.goto(f"{url}/kiosk/?slide=600&idle=600")
    await wait_for_expression(
        page, "document.getElementById('pairing-code').textContent.length === 6"
    )
    code = await page.locator("#pairing-code").text_content()
    assert code
    await asyncio.to_thread(_cli, config, "kiosk", "approve", code, "--name", name, "--group", "G1")
    await page.locator("#stage article").wait_for(timeout=15000)


async def _open_news(page: Page, item_id: int) -> None:
    await page.click("button[data-category='']")
    await page.click(f"button[data-open='{item_id}']")
    await page.locator("article video[data-news]").wait_for()
    await page.evaluate("document.querySelector('article video').muted = true")


async def test_kiosk_plays_a_news_clip(tmp_path: Path, output_dir: Path) -> None:
    kiosk_port = free_port()
    config = tmp_path / "unicomm.toml"
    config.write_text(
        'data_dir = "var"\nsip_port = 0\nsip_tls_port = 0\nkiosk_heartbeat_seconds = 1\n'
        f'kiosk_http_host = "127.0.0.1"\nkiosk_http_port = {kiosk_port}\n'
        'vod_x264_preset = "ultrafast"\nvod_segment_seconds = 2\nvod_ladder = [240, 144]\n'
    )
    _cli(config, "db", "upgrade")
    _cli(config, "user", "add", "op", "--role", "operator", "--password", "password-123")
    token = _cli(config, "token", "add", "op")
    _cli(config, "kiosk", "group", "add", "G1", "--name", "长安街", "--district", "东城")
    for code, name, level in (("CCTV", "中央电视台", "central"), ("CITY", "市台", "city")):
        _cli(config, "vod", "station", "add", code, "--name", name, "--level", level, "--kind=tv")
    clip = _make_clip(tmp_path / "news.mp4")
    _cli(config, "vod", "import", str(clip), "--station", "CCTV", "--title", "新闻联播")
    _cli(config, "vod", "import", str(clip), "--station", "CITY", "--title", "未上信息亭")

    server = ServerProcess(config, output_dir / "server.log")
    stopped = False
    kiosk_url = f"http://127.0.0.1:{kiosk_port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as api:
            base = server.base_url
            catalogue = await _api(api, "GET", f"{base}/api/vod/items")
            keys = {item["title"]: item["play_url"].split("/")[3] for item in catalogue}
            news = await _api(
                api,
                "POST",
                f"{base}/api/kiosk/items",
                json={
                    "kind": "news",
                    "category": "news",
                    "title_zh": "新闻联播",
                    "title_en": "Evening news",
                    "vod_key": keys["新闻联播"],
                },
            )
            await _api(
                api,
                "POST",
                f"{base}/api/kiosk/playlists",
                json={"name": "G1", "groups": ["G1"], "item_ids": [news["id"]]},
            )

            # Only clips put on the kiosks get a signed link there; the rest of vod stays shut.
            for url in (kiosk_url, base):
                async with api.get(
                    f"{url}/kiosk/news/{keys['未上信息亭']}", allow_redirects=False
                ) as refused:
                    assert refused.status == 404
                async with api.get(
                    f"{url}/kiosk/news/{keys['新闻联播']}", allow_redirects=False
                ) as redirect:
                    assert redirect.status == 302
                    assert redirect.headers["Location"].startswith("/kiosk/vod/s/")
            async with api.get(f"{kiosk_url}/kiosk/api/news/{keys['新闻联播']}") as no_token:
                assert no_token.status == 401
            for path in (f"/vod/media/{keys['新闻联播']}/master.m3u8", "/vod/static/hls.min.js"):
                async with api.get(kiosk_url + path) as response:
                    assert response.status == 404, path
            async with api.get(f"{kiosk_url}/kiosk/hls.min.js") as player:
                assert player.status == 200

            async with chromium(["--autoplay-policy=no-user-gesture-required"]) as browser:
                # On the main port, as kiosks inside the government network are.
                inside = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await inside.new_page()
                await _pair(page, base, config, "k-inside")
                await _open_news(page, news["id"])
                await wait_for_expression(page, f"{CURRENT_TIME} > 1.0")
                assert await page.evaluate("Boolean(document.querySelector('article video').hls)")
                await inside.close()

                # On the kiosks' own listener (the public network).
                street = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await street.new_page()
                await _pair(page, kiosk_url, config, "k-street")
                await wait_for_expression(
                    page, "document.body.dataset.newsCached === '1/1'", seconds=30
                )
                await _open_news(page, news["id"])
                await wait_for_expression(page, f"{CURRENT_TIME} > 1.0")
                await page.screenshot(path=str(output_dir / "news.png"))

                # The server goes away: the clip plays and seeks from the Service Worker.
                server.stop()
                stopped = True
                await page.reload()
                await page.locator("#offline").wait_for(state="visible", timeout=10000)
                await _open_news(page, news["id"])
                await wait_for_expression(page, f"{CURRENT_TIME} > 1.0")
                await page.evaluate(f"{CURRENT_TIME} = 7")
                await wait_for_expression(page, f"{CURRENT_TIME} > 7.5")
                await page.screenshot(path=str(output_dir / "news-offline.png"))
                await street.close()
    finally:
        if not stopped:
            server.stop()
