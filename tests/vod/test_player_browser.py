"""Headless Chromium plays a catalogued programme with hls.js and seeks in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Staff
from support.browser import chromium
from vod_media import make_clip

from vod.models import Kind, Level

pytestmark = pytest.mark.browser

CURRENT_TIME = "document.getElementById('vod-player').currentTime"


async def test_play_and_seek_in_chromium(staff: Staff, tmp_path: Path, output_dir: Path) -> None:
    service = staff.service
    async with service.db.session() as session:
        await service.add_station(
            session, code="CCTV", name="中央电视台", level=Level.CENTRAL, kind=Kind.TV
        )
    clip = make_clip(tmp_path / "long.mp4", 12.0)
    base = str(staff.client.make_url("")).rstrip("/")

    async with chromium(["--autoplay-policy=no-user-gesture-required"]) as browser:
        page = await browser.new_page(locale="zh-CN")
        await page.goto(f"{base}/login?next=/console/vod")
        await page.fill("#username", "editor")
        await page.fill("#password", "long-enough-pw")
        await page.click("#login")
        await page.wait_for_url(f"{base}/console/vod")

        # Upload through the console form; the jobs table follows the transcode to the end.
        await page.fill('#vod-upload input[name="title"]', "新闻联播")
        await page.set_input_files('#vod-upload input[name="file"]', str(clip))
        await page.click('#vod-upload button[type="submit"]')
        await page.wait_for_function(
            "document.getElementById('vod-upload-result').textContent.includes('转码任务')"
        )
        done = '#vod-jobs tr[data-state="done"]'
        await page.wait_for_selector(done, timeout=60_000)
        assert "100%" in await page.locator(done).inner_text()
        await page.reload()
        assert "新闻联播" in await page.locator("#vod-items").inner_text()
        item_id = await page.locator(".vod-play").first.get_attribute("data-item-id")
        await page.evaluate("document.getElementById('vod-player').muted = true")
        await page.click(f'.vod-play[data-item-id="{item_id}"]')

        # hls.js loads the master playlist, a rendition and segments; playback starts.
        await page.wait_for_function(f"{CURRENT_TIME} > 1.0", timeout=20_000)
        assert await page.evaluate("window.Hls && Hls.isSupported()")
        await page.evaluate(f"{CURRENT_TIME} = 8.0")
        await page.wait_for_function(f"{CURRENT_TIME} > 8.5", timeout=20_000)
        duration = await page.evaluate("document.getElementById('vod-player').duration")
        assert duration == pytest.approx(12.0, abs=2.0)
        await page.screenshot(path=str(output_dir / "vod-player.png"), full_page=True)

        # The English page has the same catalogue.
        await page.click("#lang-switch")
        await page.wait_for_load_state()
        assert await page.locator("main h1").inner_text() == "News on demand"
        assert "新闻联播" in await page.locator("#vod-items").inner_text()
