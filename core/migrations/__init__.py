"""Alembic migrations: core's own tree plus one branch per service.

Each service keeps its revisions in ``<service>/migrations/`` with a branch label
of its name; :func:`upgrade` collects every location through service discovery,
so core never names a service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from core.services import discover_services

HERE = Path(__file__).parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    locations = [str(HERE / "versions")]
    for service in discover_services():
        if service.migrations_dir is not None:
            locations.append(str(service.migrations_dir))
    config.set_main_option("version_locations", " ".join(locations))
    config.set_main_option("path_separator", "space")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "heads") -> None:
    await asyncio.to_thread(upgrade, database_url, revision)
