"""Headless Chromium as a street kiosk against a real ``unicomm serve``.

One server, one browser, one story (a browser start is the expensive part): pairing,
targeted content, language, takeover within a second, fleet online with the kiosk's
screenshot on the board, then stale, the kiosk-only listener, and then the server
stopped: reload and seek a cached clip.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.browser import chromium, wait_for_expression
from support.processes import ServerProcess, run_cli
from support.servers import free_port

pytestmark = pytest.mark.browser

# Installed through page.evaluate (not bound by the kiosk's CSP): the time the alert
# overlay became visible, by the same wall clock the test reads.
ALERT_SHOWN_AT_JS = """
() => {
  const alert = document.getElementById('alert');
  new MutationObserver((_, observer) => {
    if (!alert.hidden) { window.alertShownAt = Date.now(); observer.disconnect(); }
  }).observe(alert, { attributes: true, attributeFilter: ['hidden'] });
}
"""


def _cli(config: Path, *args: str) -> str:
    done = run_cli("--config", str(config), *args, cwd=config.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _make_webm(path: Path) -> bytes:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10:duration=5",
            "-c:v",
            "libvpx",
            "-b:v",
            "200k",
            "-g",
            "10",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path.read_bytes()


def _probe_image(image: bytes, folder: Path) -> dict[str, Any]:
    """What ffprobe makes of an image: it must decode it."""
    path = folder / "screenshot.jpg"
    path.write_bytes(image)
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    stream: dict[str, Any] = json.loads(done.stdout)["streams"][0]
    return stream


async def _api(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with session.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        assert response.status < 300, body
        return body


async def test_kiosk_in_chromium(tmp_path: Path, output_dir: Path) -> None:
    kiosk_port = free_port()
    config = tmp_path / "unicomm.toml"
    config.write_text(
        'data_dir = "var"\nkiosk_heartbeat_seconds = 1\nkiosk_stale_seconds = 3\n'
        f'kiosk_http_host = "127.0.0.1"\nkiosk_http_port = {kiosk_port}\n'
        "sip_port = 0\nsip_tls_port = 0\n"
    )
    _cli(config, "db", "upgrade")
    _cli(config, "user", "add", "op", "--role", "operator", "--password", "password-123")
    token = _cli(config, "token", "add", "op")
    _cli(config, "kiosk", "group", "add", "G1", "--name", "长安街", "--district", "东城")
    _cli(config, "kiosk", "group", "add", "G2", "--name", "西单", "--district", "西城")
    clip = _make_webm(tmp_path / "clip.webm")

    server = ServerProcess(config, output_dir / "server.log")
    stopped = False
    kiosk_url = f"http://127.0.0.1:{kiosk_port}"
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(headers=bearer) as api:
            base = server.base_url
            media = await _api(
                api,
                "POST",
                f"{base}/api/kiosk/media?name=clip.webm",
                data=clip,
                headers={"Content-Type": "video/webm"},
            )
            items = {}
            for key, body in {
                "notice": {
                    "kind": "notice",
                    "category": "notices",
                    "title_zh": "长安街停水通知",
                    "title_en": "Water cut on Chang'an Avenue",
                    "body_zh": "<img src=x onerror=alert(1)>",
                },
                "guide": {
                    "kind": "guide",
                    "category": "guides",
                    "title_zh": "居住证办理",
                    "title_en": "Residence permit",
                    "steps": [{"zh": "网上预约", "en": "Book online"}],
                },
                "video": {
                    "kind": "video",
                    "category": "clips",
                    "title_zh": "城市宣传片",
                    "title_en": "City film",
                    "media_id": media["id"],
                },
                "west": {
                    "kind": "notice",
                    "category": "notices",
                    "title_zh": "西单专属通知",
                    "title_en": "Xidan only",
                },
                "later": {
                    "kind": "notice",
                    "category": "notices",
                    "title_zh": "明年的通知",
                    "title_en": "Next year",
                    "valid_from": "2099-01-01T00:00:00Z",
                },
            }.items():
                items[key] = (await _api(api, "POST", f"{base}/api/kiosk/items", json=body))["id"]
            await _api(
                api,
                "POST",
                f"{base}/api/kiosk/playlists",
                json={
                    "name": "G1",
                    "groups": ["G1"],
                    "item_ids": [items["notice"], items["guide"], items["video"], items["later"]],
                },
            )
            await _api(
                api,
                "POST",
                f"{base}/api/kiosk/playlists",
                json={"name": "G2", "groups": ["G2"], "item_ids": [items["west"]]},
            )

            # The kiosk listener serves the kiosk and nothing else.
            for path in (
                "/",
                "/console/kiosk",
                "/login",
                "/api/openapi.json",
                "/api/kiosk/fleet",
                "/api/vod/items",
                "/api/sms/broadcasts",
                "/healthz",
                "/metrics",
                "/sip",
                "/static/console.css",
                "/kiosk/../api/users",
            ):
                async with api.get(kiosk_url + path, allow_redirects=False) as response:
                    assert response.status == 404, path

            async with chromium() as browser:
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda dialog: dialogs.append(dialog.message))
                await page.goto(f"{kiosk_url}/kiosk/?slide=1&idle=600")
                code_box = page.locator("#pairing-code")
                await code_box.wait_for(state="visible")
                await wait_for_expression(
                    page, "document.getElementById('pairing-code').textContent.length === 6"
                )
                code = await code_box.text_content()
                assert code
                await asyncio.to_thread(
                    _cli, config, "kiosk", "approve", code, "--name", "k1", "--group", "G1"
                )
                await page.locator("#stage article").wait_for(timeout=15000)
                await page.screenshot(path=str(output_dir / "attract.png"))

                # Browse all: this group's content now; not another group's, not next year's.
                await page.click("button[data-category='']")
                tiles = page.locator(".tiles button")
                await tiles.first.wait_for()
                titles = await tiles.all_text_contents()
                assert sorted(titles) == sorted(["长安街停水通知", "居住证办理", "城市宣传片"])
                await page.click("#lang")
                assert sorted(await tiles.all_text_contents()) == sorted(
                    ["Water cut on Chang'an Avenue", "Residence permit", "City film"]
                )
                assert await page.get_attribute("html", "lang") == "en"
                await page.click(f"button[data-open='{items['notice']}']")
                assert (
                    await page.locator("article p").first.text_content()
                    == "<img src=x onerror=alert(1)>"
                )
                await page.screenshot(path=str(output_dir / "english.png"))
                await wait_for_expression(page, "document.body.dataset.mediaCached === '1/1'")

                # Takeover: from publish to the DOM change within a second, then cleared.
                # The page notes the wall-clock time of the change itself (same machine
                # clock as ours), so the measurement carries no polling delay.
                await page.evaluate(ALERT_SHOWN_AT_JS)
                started = time.time()
                alert = await _api(
                    api,
                    "POST",
                    f"{base}/api/kiosk/alerts",
                    json={"headline": "暴雨红色预警", "text": "请勿外出"},
                )
                await wait_for_expression(page, "window.alertShownAt !== undefined", seconds=5)
                elapsed = await page.evaluate("window.alertShownAt") / 1000 - started
                assert elapsed < 1.0, f"alert took {elapsed:.2f} s"
                assert await page.locator("#alert-headline").text_content() == "暴雨红色预警"
                await page.screenshot(path=str(output_dir / "alert.png"))
                await _api(api, "POST", f"{base}/api/kiosk/alerts/{alert['id']}/cancel")
                await wait_for_expression(
                    page, "document.getElementById('alert').hidden", seconds=3
                )

                # Fleet board: online, then stale once the page stops rendering.
                async def state() -> str:
                    board = await _api(api, "GET", f"{base}/api/kiosk/fleet")
                    return str(board[0]["state"])

                deadline = time.monotonic() + 10
                while await state() != "online":
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.3)

                # The heartbeat brought a picture of the screen: a small JPEG, for staff only.
                deadline = time.monotonic() + 15
                while not (board := await _api(api, "GET", f"{base}/api/kiosk/fleet"))[0][
                    "screenshot_url"
                ]:
                    assert time.monotonic() < deadline, "no screenshot arrived"
                    await asyncio.sleep(0.3)
                shot_url = board[0]["screenshot_url"]
                async with api.get(base + shot_url) as shot:
                    assert shot.status == 200 and shot.content_type == "image/jpeg"
                    image = await shot.read()
                (output_dir / "kiosk-screenshot.jpg").write_bytes(image)
                assert 1000 < len(image) <= 64 * 1024, len(image)
                probed = await asyncio.to_thread(_probe_image, image, tmp_path)
                assert probed["codec_name"] == "mjpeg"
                assert (probed["width"], probed["height"]) == (320, 200), probed  # 1280 x 800 / 4
                async with aiohttp.ClientSession() as anonymous:
                    async with anonymous.get(base + shot_url) as denied:
                        assert denied.status == 401
                    async with anonymous.get(kiosk_url + shot_url) as elsewhere:
                        assert elsewhere.status == 404  # never on the kiosks' network
                # The fleet board in a staff browser shows it.
                staff = await browser.new_context(viewport={"width": 1280, "height": 900})
                console = await staff.new_page()
                await console.goto(f"{base}/login?next=/console/kiosk")
                await console.fill("#username", "op")
                await console.fill("#password", "password-123")
                await console.click("#login")
                thumbnail = console.locator("tr[data-kiosk='k1'] td.screenshot img")
                await thumbnail.wait_for()
                await wait_for_expression(
                    console,
                    "document.querySelector(\"tr[data-kiosk='k1'] td.screenshot img\")"
                    ".naturalWidth === 320",
                )
                await thumbnail.scroll_into_view_if_needed()
                await console.screenshot(path=str(output_dir / "fleet-board.png"))
                await staff.close()
                await page.evaluate("window.kioskApp.stopRendering()")
                deadline = time.monotonic() + 15
                while await state() != "stale":
                    assert time.monotonic() < deadline, "never stale"
                    await asyncio.sleep(0.5)
                async with api.get(f"{base}/console/kiosk") as board_page:
                    assert "state-stale" in await board_page.text()

                # The server goes away: the kiosk reloads from its Service Worker and plays on.
                server.stop()
                stopped = True
                await page.reload()
                await page.locator("#stage article, #stage .tiles").first.wait_for(timeout=15000)
                await page.locator("#offline").wait_for(state="visible", timeout=10000)
                await page.click("button[data-category='clips']")
                await page.click(f"button[data-open='{items['video']}']")
                position = await page.evaluate(
                    """async () => {
                        const video = document.querySelector('article video');
                        video.muted = true;
                        await video.play().catch(() => {});
                        await new Promise((resolve, reject) => {
                            video.onseeked = resolve; video.onerror = () => reject(video.error);
                            video.currentTime = 3;
                        });
                        return video.currentTime;
                    }"""
                )
                assert position >= 2.9
                await page.screenshot(path=str(output_dir / "offline.png"))
                assert dialogs == []  # no script from the content ever ran
                await context.close()
    finally:
        if not stopped:
            server.stop()
