"""A real unicomm server (web app + SIP on free ports) for the SIP server tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from core import migrations
from core.config import load_settings
from core.context import AppContext
from core.models import Department
from core.web import create_app
from support.servers import free_port
from voip import VOIP_SERVER, VoipServer, service

PASSWORD = "secret-pw-1"


@dataclass
class Unicomm:
    ctx: AppContext
    http: TestServer
    voip: VoipServer
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def sip_port(self) -> int:
        return self.voip.ports["UDP"]

    @property
    def tls_port(self) -> int:
        return self.voip.ports["TLS"]

    @property
    def http_port(self) -> int:
        return int(self.http.port or 0)

    async def stop(self) -> None:
        await self.http.close()


async def add_extensions(ctx: AppContext, numbers: list[str], password: str = PASSWORD) -> None:
    async with ctx.db.session() as session:
        session.add(Department(code="IT", name="IT"))
        await session.flush()
        for number in numbers:
            await service.add_extension(
                session,
                number=number,
                name=f"Phone {number}",
                password=password,
                realm=ctx.settings.sip_realm,
                department_code="IT",
            )


async def start_unicomm(
    data: Path,
    *,
    extensions: tuple[str, ...] = ("1001", "1002", "1003"),
    database_url: str | None = None,
    migrate: bool = True,
    **overrides: Any,
) -> Unicomm:
    http_port = free_port()
    settings = load_settings(
        None,
        data_dir=str(data),
        database_url=database_url or f"sqlite+aiosqlite:///{data / 'unicomm.db'}",
        http_host="127.0.0.1",
        http_port=http_port,
        sip_host="127.0.0.1",
        sip_port=overrides.pop("sip_port", 0),
        sip_tls_port=0,
        # Media workers are pjsua2 processes: only the tests of PBX features start them.
        voip_media_workers=overrides.pop("voip_media_workers", 0),
        **overrides,
    )
    if migrate:
        await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    if extensions:
        await add_extensions(ctx, list(extensions))
    app = create_app(ctx)
    http = TestServer(app, host="127.0.0.1", port=http_port)
    await http.start_server()
    return Unicomm(ctx, http, app[VOIP_SERVER], {n: PASSWORD for n in extensions})
