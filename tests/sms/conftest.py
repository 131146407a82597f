"""A unicomm app with the Twilio provider pointed at the local Twilio-compatible server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.servers import free_port

from core import migrations
from core.config import load_settings
from core.context import AppContext
from core.models import Department, Role
from core.web import create_app
from sms import service
from sms.testing.twilio_server import ServerConfig, TwilioServer

ACCOUNT = "AC" + "1" * 32
TOKEN = "test-auth-token"


@dataclass
class SmsStack:
    ctx: AppContext
    client: TestClient
    twilio: TwilioServer
    base_url: str

    async def login(self, username: str, role: Role | None = None) -> dict[str, str]:
        """Sign in (creating the login when a role is given); returns the CSRF header."""
        if role is not None:
            async with self.ctx.db.session() as session:
                await self.ctx.auth.create_user(session, username, "password-123", role)
        self.client.session.cookie_jar.clear()
        response = await self.client.post(
            "/api/auth/login", json={"username": username, "password": "password-123"}
        )
        assert response.status == 200, await response.text()
        return {"X-CSRF-Token": (await response.json())["csrf_token"]}

    async def contacts(self, count: int, department: str = "EMERG", prefix: str = "1380") -> None:
        async with self.ctx.db.session() as session:
            session.add(Department(code=department, name=department))
        rows = ["name,mobile,department,role"]
        rows += [f"人员{i},{prefix}{i:07d},{department},staff" for i in range(count)]
        async with self.ctx.db.session() as session:
            report = await service.import_contacts(session, "\n".join(rows).encode())
        assert report.created == count and not report.errors

    @staticmethod
    async def wait_for(check: Callable[[], Any], within: float = 60.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while True:
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}")
            await asyncio.sleep(0.1)


def stack_factory(tmp_path: Path, database_url: str | None = None, **settings: Any) -> Any:
    async def make(**server: Any) -> AsyncIterator[SmsStack]:
        twilio = await TwilioServer(
            ServerConfig(
                account_sid=ACCOUNT, auth_token=TOKEN, log_path=tmp_path / "twilio.jsonl", **server
            )
        ).start()
        port = free_port()
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / "var"),
            "database_url": database_url or f"sqlite+aiosqlite:///{tmp_path / 'unicomm.db'}",
            "sms_provider": "twilio",
            "twilio_account_sid": ACCOUNT,
            "twilio_auth_token": TOKEN,
            "twilio_from": "+15005550006",
            "twilio_api_base": twilio.url,
            "public_url": f"http://127.0.0.1:{port}",
            "sms_approval_threshold": 0,
            "sms_retry_base_seconds": 0.2,
            "sms_in_doubt_seconds": 2.0,
            "sms_status_poll_seconds": 5.0,
        }
        values.update(settings)
        config = load_settings(None, **values)
        await migrations.upgrade_async(config.database_url)
        ctx = AppContext.create(config)
        client = TestClient(TestServer(create_app(ctx), port=port))
        await client.start_server()
        try:
            yield SmsStack(ctx, client, twilio, f"http://127.0.0.1:{port}")
        finally:
            await client.close()
            await twilio.stop()

    return make


@pytest.fixture
async def sms_stack(tmp_path: Path) -> AsyncIterator[Any]:
    """Call ``async with sms_stack(**server_config)``-style: yields a factory."""
    holders: list[Any] = []

    async def start(**server: Any) -> SmsStack:
        generator = stack_factory(tmp_path)(**server)
        holders.append(generator)
        return await generator.__anext__()

    yield start
    for generator in holders:
        await generator.aclose()


@pytest.fixture
async def sms_stack_postgres(tmp_path: Path, postgres_url: str) -> AsyncIterator[Any]:
    """The same stack on a fresh PostgreSQL database (the engine's SKIP LOCKED claim path)."""
    holders: list[Any] = []

    async def start(**server: Any) -> SmsStack:
        generator = stack_factory(tmp_path, database_url=postgres_url)(**server)
        holders.append(generator)
        return await generator.__anext__()

    yield start
    for generator in holders:
        await generator.aclose()
