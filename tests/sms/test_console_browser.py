"""Headless Chromium on the broadcast page: preview, send, and the progress the page follows."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from support.browser import chromium

from core.context import AppContext
from core.models import Department, Role
from sms.models import Contact

pytestmark = pytest.mark.browser


async def test_compose_preview_send_and_follow_in_chromium(
    app_context: AppContext, client: TestClient, output_dir: Path
) -> None:
    async with app_context.db.session() as session:
        await app_context.auth.create_user(session, "duty", "password-123", Role.DUTY_OFFICER)
        session.add(Department(code="EMERG", name="应急管理局"))
    async with app_context.db.session() as session:
        for i in range(3):
            session.add(Contact(name=f"人员{i}", mobile=f"+861380013800{i}", department_id=1))
    base = str(client.make_url("")).rstrip("/")

    async with chromium() as browser:
        page = await browser.new_page(locale="zh-CN")
        await page.goto(f"{base}/login?next=/console/sms")
        await page.fill("#username", "duty")
        await page.fill("#password", "password-123")
        await page.click("#login")
        await page.wait_for_url(f"{base}/console/sms")
        assert await page.locator("main h1").inner_text() == "短信群发"

        await page.fill("#text", "请于15:00到三楼开会")
        await page.fill("#departments", "EMERG")
        await page.click("#preview-button")
        await page.wait_for_selector("#preview:not([hidden])")
        assert await page.locator('#preview [data-field="recipients"]').inner_text() == "3"
        assert await page.locator('#preview [data-field="encoding"]').inner_text() == "UCS-2"

        await page.click("#send-button")
        await page.wait_for_selector("#progress:not([hidden])")
        await page.wait_for_function(
            "document.querySelector('[data-count=\"delivered\"]').textContent === '3'",
            timeout=30_000,
        )
        # The counts and the per-recipient table refresh separately: wait for the rows too.
        await page.wait_for_function(
            "document.querySelectorAll('#recipients tbody tr[data-state=\"delivered\"]')"
            ".length === 3",
            timeout=30_000,
        )
        assert await page.locator("#compose-error").is_hidden()
        export = await page.locator("#cap-export").get_attribute("href")
        assert export is not None and export.endswith("/cap")
        document = await (await page.request.get(f"{base}{export}")).body()
        assert b"urn:oasis:names:tc:emergency:cap:1.2" in document
        await page.screenshot(path=str(output_dir / "sms-broadcast.png"), full_page=True)

        # The history row opens the same progress after a reload, and in English.
        await page.click("#lang-switch")
        await page.wait_for_load_state()
        assert await page.locator("main h1").inner_text() == "SMS alerts"
        await page.click("#history .open-broadcast")
        await page.wait_for_function(
            "document.querySelectorAll('#recipients tbody tr[data-state=\"delivered\"]')"
            ".length === 3"
        )
        assert "Delivered" in await page.locator("#recipients").inner_text()
