"""A newcomer in real headless Chromium: log in, switch language, visit every service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.browser import chromium
from support.processes import ServerProcess, run_cli

SERVICES = {
    "voip": ("电话交换", "Telephony"),
    "conference": ("视频会议", "Video conference"),
    "vod": ("新闻点播", "News on demand"),
    "sms": ("短信群发", "SMS alerts"),
    "kiosk": ("信息亭", "Kiosks"),
}

pytestmark = pytest.mark.browser


async def test_console_login_language_and_services(tmp_path: Path, output_dir: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    demo = run_cli("--config", str(config), "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    password = re.search(r"admin        admin / (\S+)", demo.stdout)
    assert password is not None
    server = ServerProcess(config, tmp_path / "serve.log")
    try:
        async with chromium() as browser:
            page = await browser.new_page(locale="zh-CN")
            await page.goto(server.base_url + "/")
            assert page.url.endswith("/login?next=/") or "/login" in page.url
            await page.fill("#username", "admin")
            await page.fill("#password", "not-the-password")
            await page.click("#login")
            assert "用户名或密码错误" in await page.locator("[role=alert]").inner_text()

            await page.fill("#password", password.group(1))
            await page.click("#login")
            await page.wait_for_url(server.base_url + "/")
            cards = page.locator("li.service")
            assert await cards.count() == len(SERVICES)
            for key, (zh, _) in SERVICES.items():
                assert zh in await page.locator(f'li.service[data-service="{key}"] h2').inner_text()
            await page.screenshot(path=str(output_dir / "home-zh.png"), full_page=True)

            await page.click("#lang-switch")
            await page.wait_for_load_state()
            assert await page.locator("html").get_attribute("lang") == "en"
            for key, (_, en) in SERVICES.items():
                await page.click(f'nav.services a[data-service="{key}"]')
                await page.wait_for_url(f"{server.base_url}/console/{key}")
                assert await page.locator("main h1").inner_text() == en
                await page.screenshot(path=str(output_dir / f"{key}-en.png"), full_page=True)
            await page.click('nav.services a[data-service="voip"]')
            await page.wait_for_url(f"{server.base_url}/console/voip")
            assert "Extensions" in await page.locator("main h2").inner_text()
            assert await page.locator("#extensions tbody tr").count() == 4

            await page.click("#lang-switch")
            await page.wait_for_load_state()
            assert await page.locator("main h1").inner_text() == SERVICES["voip"][0]
            await page.click("#logout")
            await page.wait_for_url(re.compile(r".*/login$"))
            await page.goto(server.base_url + "/console/sms")
            assert "/login" in page.url
    finally:
        assert server.stop() == 0
