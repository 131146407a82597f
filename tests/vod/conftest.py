"""Fixtures of the news-on-demand tests (helpers live in ``vod_media``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vod_media import make_clip, vod_settings

from core import migrations
from core.config import Settings
from core.context import AppContext
from core.models import Role
from core.web import create_app
from vod import VOD
from vod.service import VodService


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vod-media")


@pytest.fixture(scope="session")
def tv_clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "news.mp4", 6.0)


@pytest.fixture(scope="session")
def tv_bytes(tv_clip: Path) -> bytes:
    return tv_clip.read_bytes()


@pytest.fixture(scope="session")
def radio_clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "radio.m4a", 6.0, video=False)


@pytest.fixture
async def vod_context(tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = vod_settings(tmp_path)
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    yield ctx
    await ctx.close()


@pytest.fixture
def vod(vod_context: AppContext) -> VodService:
    return VodService(vod_context.settings, vod_context.db, vod_context.state, vod_context.secret)


@dataclass
class Staff:
    """A test client of the app with fast transcoder settings and bearer tokens."""

    client: TestClient
    ctx: AppContext
    service: VodService
    editor: dict[str, str]
    viewer: dict[str, str]


async def _token(ctx: AppContext, name: str, role: Role) -> dict[str, str]:
    async with ctx.db.session() as session:
        user = await ctx.auth.create_user(session, name, "long-enough-pw", role)
        token = await ctx.auth.issue_api_token(session, user, "test")
    return {"Authorization": f"Bearer {token}"}


async def open_app(settings: Settings) -> AsyncIterator[Staff]:
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    app = create_app(ctx)
    async with TestClient(TestServer(app)) as client:
        editor = await _token(ctx, "editor", Role.OPERATOR)
        viewer = await _token(ctx, "viewer", Role.STAFF)
        yield Staff(client, ctx, app[VOD].service, editor, viewer)


@pytest.fixture
async def staff(tmp_path: Path) -> AsyncIterator[Staff]:
    async for opened in open_app(vod_settings(tmp_path, vod_max_upload_mb=2)):
        yield opened
