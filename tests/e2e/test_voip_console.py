"""The telephony page in headless Chromium: add an extension, see who is registered."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from support.browser import chromium
from support.processes import ServerProcess, run_cli

from core.db import Database
from voip.models import Binding, Extension

pytestmark = pytest.mark.browser


async def register_phone(url: str) -> None:
    """A binding as the registrar writes it when 1001's desk phone registers."""
    db = Database(url)
    try:
        async with db.session() as session:
            extension = await session.scalar(select(Extension).where(Extension.number == "1001"))
            assert extension is not None
            session.add(
                Binding(
                    extension_id=extension.id,
                    contact_uri="sip:1001@198.51.100.20:5062",
                    call_id="reg-1",
                    cseq=1,
                    expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3600),
                    transport="udp",
                    source="198.51.100.20:5062",
                    user_agent="Yealink T46U",
                    node="node-a",
                )
            )
    finally:
        await db.close()


async def test_add_an_extension_and_see_who_is_registered(tmp_path: Path, output_dir: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    demo = run_cli("--config", str(config), "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    password = re.search(r"admin        admin / (\S+)", demo.stdout)
    assert password is not None
    await register_phone(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'unicomm.db'}")
    server = ServerProcess(config, tmp_path / "serve.log")
    try:
        async with chromium() as browser:
            page = await browser.new_page(locale="zh-CN")
            await page.goto(server.base_url + "/console/voip")
            await page.fill("#username", "admin")
            await page.fill("#password", password.group(1))
            await page.click("#login")
            await page.wait_for_url(f"{server.base_url}/console/voip")
            assert await page.locator("#extensions tbody tr").count() == 4

            # A refused form says why, in Chinese, and keeps what was typed.
            await page.fill("#add-number", "4001")
            await page.fill("#add-name", "赵敏 Zhao Min")
            await page.select_option("#add-department", "IT")
            await page.select_option("#add-cos", "local")
            await page.fill("#add-password", "1234567")
            await page.evaluate(
                "document.querySelector('#add-password').removeAttribute('minlength')"
            )
            await page.click("#add-submit")
            assert "SIP 密码: 至少需要 8 个字符" in await page.locator("#add-error").inner_text()
            assert await page.input_value("#add-name") == "赵敏 Zhao Min"

            await page.fill("#add-password", "s3cret-pass")
            await page.click("#add-submit")
            await page.wait_for_url(f"{server.base_url}/console/voip?added=4001")
            assert "已添加分机 4001" in await page.locator("#notice").inner_text()
            row = page.locator('#extensions tr[data-number="4001"]')
            assert "赵敏 Zhao Min" in await row.inner_text()
            assert "市话" in await row.inner_text()

            registered = page.locator("#registrations tbody tr")
            assert await registered.count() == 1
            assert "198.51.100.20:5062" in await registered.inner_text()
            await page.screenshot(path=str(output_dir / "voip-zh.png"), full_page=True)

            await page.click("#lang-switch")
            await page.wait_for_load_state()
            assert await page.locator("main h1").inner_text() == "Telephony"
            assert "Registered now" in await page.locator("#registered h3").inner_text()
            text = await registered.inner_text()
            assert "sip:1001@198.51.100.20:5062" in text and "UDP" in text and "Yealink" in text
            assert "No call in progress." in await page.locator("#calls").inner_text()

            await row.locator("a.edit").click()
            await page.wait_for_url(f"{server.base_url}/console/voip/extensions/4001")
            await page.uncheck("#edit-enabled")
            await page.click("#edit-submit")
            await page.wait_for_url(f"{server.base_url}/console/voip?saved=4001")
            enabled_cell = page.locator('#extensions tr[data-number="4001"] td:nth-child(5)')
            assert await enabled_cell.inner_text() == "no"
            await page.screenshot(path=str(output_dir / "voip-en.png"), full_page=True)
    finally:
        assert server.stop() == 0
