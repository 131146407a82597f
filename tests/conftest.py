"""Fixtures shared by the whole suite."""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.servers import PrivatePostgres, PrivateRedis

from core import migrations
from core.config import Settings, load_settings
from core.context import AppContext
from core.web import create_app

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
# Media workers are pjsua2 processes: a test that wants them asks (voip_media_workers=N),
# the others (every app any test starts) run without them.
os.environ.setdefault("UNICOMM_VOIP_MEDIA_WORKERS", "0")
# Every in-process app binds SIP somewhere: on free ports, so a SIP server another
# process holds on 5060 (a phone test's, a neighbour's) cannot collide with it.
os.environ.setdefault("UNICOMM_SIP_PORT", "0")
os.environ.setdefault("UNICOMM_SIP_TLS_PORT", "0")


@pytest.fixture(autouse=True)
async def finalize_while_the_loop_runs() -> AsyncIterator[None]:
    """Collect garbage before the test's event loop closes.

    A subprocess transport finalised after its loop closed raises "Event loop is
    closed" from ``__del__``; pytest's unraisable hook then imports (and parses)
    code inside whatever ``ast.parse`` the collection interrupted, and CPython
    3.11.7's AST state is not re-entrant (gh-106905): every later parse fails with
    "AST constructor recursion depth mismatch".
    """
    yield
    gc.collect()
    await asyncio.sleep(0)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    server = PrivatePostgres()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    server = PrivateRedis()
    try:
        yield server.url
    finally:
        server.stop()


def _asyncpg_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _admin(server_url: str, statement: str) -> None:
    async def run() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(server_url))
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(run())


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"unicomm_test_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    base = postgres_server_url.split("://", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{base}/{name}"
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs once per backend, on a real server for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'unicomm.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """Where a test leaves what a person may want to look at (screenshots, recordings)."""
    folder = OUTPUT / request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    os.environ.pop("UNICOMM_CONFIG", None)
    return load_settings(None, data_dir=str(tmp_path / "var"), **overrides)


@pytest.fixture
async def app_context(tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = make_settings(
        tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'unicomm.db'}"
    )
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    yield ctx
    await ctx.close()


@pytest.fixture
async def client(app_context: AppContext) -> AsyncIterator[TestClient]:
    app = create_app(app_context)
    # create_app closes the context on cleanup; the fixture above tolerates a double close.
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
