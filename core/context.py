"""The application context: the one place that owns settings, storage, bus and state."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from core.auth import AuthService
from core.bus import Bus, make_bus
from core.config import Settings
from core.db import Database
from core.state import SharedState, make_state

log = structlog.get_logger("core")

CONTROL_TOKEN_FILE = "control.token"


def load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(32).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


@dataclass
class AppContext:
    settings: Settings
    db: Database
    bus: Bus
    state: SharedState
    auth: AuthService
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    secret: str = ""
    control_token: str = ""
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        node = settings.node_name or socket.gethostname()
        return cls(
            settings=settings,
            db=db,
            bus=make_bus(settings.redis_url, f"{node}-{os.getpid()}", settings.redis_namespace),
            state=make_state(settings.redis_url, settings.redis_namespace),
            auth=AuthService(
                db,
                max_failures=settings.login_max_failures,
                lockout=dt.timedelta(minutes=settings.login_lockout_minutes),
                session_lifetime=dt.timedelta(hours=settings.session_hours),
            ),
            secret=settings.secret_key or load_or_create_secret(settings.path("secret_key")),
        )

    async def start(self) -> None:
        await self.bus.start()

    def write_control_token(self) -> None:
        """Let local ``unicomm`` commands ask the running server (live calls, say).

        The token is new at every start and only accepted from loopback.
        """
        self.control_token = secrets.token_urlsafe(32)
        path = self.settings.path(CONTROL_TOKEN_FILE)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.control_token)

    def spawn(self, name: str, factory: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """Run a background task that is logged if it fails and cancelled at shutdown."""

        async def supervised() -> Any:
            try:
                return await factory()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task.failed", task=name)
                raise

        task = asyncio.get_running_loop().create_task(supervised(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.close()
        await self.state.close()
        await self.db.close()
