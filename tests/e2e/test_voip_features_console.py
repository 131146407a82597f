"""The call-features page in headless Chromium: set forwarding, see it listed; zh and en."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.browser import chromium
from support.processes import ServerProcess, run_cli

pytestmark = pytest.mark.browser


async def test_set_forwarding_and_see_it_listed(tmp_path: Path, output_dir: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    demo = run_cli("--config", str(config), "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    password = re.search(r"admin        admin / (\S+)", demo.stdout)
    assert password is not None
    server = ServerProcess(config, tmp_path / "serve.log")
    path = "/console/voip/features"
    try:
        async with chromium() as browser:
            page = await browser.new_page(locale="zh-CN")
            await page.goto(server.base_url + path)
            await page.fill("#username", "admin")
            await page.fill("#password", password.group(1))
            await page.click("#login")
            await page.wait_for_url(server.base_url + path)
            assert await page.locator("main h1").inner_text() == "电话功能"
            row = page.locator('#call-settings tr[data-number="1001"]')

            # Forwarding to itself is refused, in Chinese, with 422.
            await row.locator("input.forward-always").fill("1001")
            async with page.expect_response(lambda r: r.request.method == "POST") as answer:
                await row.locator("button.save").click()
            assert (await answer.value).status == 422
            assert "转移目标" in await page.locator("#form-error").inner_text()

            row = page.locator('#call-settings tr[data-number="1001"]')
            await row.locator("input.forward-always").fill("1002")
            await row.locator("button.save").click()
            await page.wait_for_url(f"{server.base_url}{path}?saved=1001")
            assert "1001" in await page.locator("#notice").inner_text()
            row = page.locator('#call-settings tr[data-number="1001"]')
            assert await row.locator("input.forward-always").input_value() == "1002"

            # An IVR menu from the form is listed with its keys.
            await page.fill("#add-menu input[name=number]", "700")
            await page.fill("#add-menu input[name=name]", "总机 Front desk")
            await page.fill("#add-menu input[name=greeting]", "您好，请按1转李娜。")
            await page.fill("#add-menu input[name=options]", "1=1002")
            await page.click("#add-menu button[type=submit]")
            await page.wait_for_url(f"{server.base_url}{path}?saved=700")
            menu = page.locator('#ivr-menus tr[data-number="700"]')
            assert "1→1002" in await menu.inner_text()
            await page.screenshot(path=str(output_dir / "voip-features-zh.png"), full_page=True)

            await page.click("#lang-switch")
            await page.wait_for_load_state()
            assert await page.locator("main h1").inner_text() == "Call features"
            assert "Forward always" in await page.locator("#call-settings thead").inner_text()
            await page.screenshot(path=str(output_dir / "voip-features-en.png"), full_page=True)
    finally:
        assert server.stop() == 0
