"""Storage on both backends: SQLite (WAL) and a real PostgreSQL server."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from core import migrations
from core.auth import audit
from core.db import Database
from core.models import AuditEntry, Department


async def test_migrations_reach_every_head_and_are_idempotent(database_url: str) -> None:
    await migrations.upgrade_async(database_url)
    await migrations.upgrade_async(database_url)
    database = Database(database_url)
    try:
        async with database.session() as session:
            applied = set(
                (await session.scalars(text("SELECT version_num FROM alembic_version"))).all()
            )
        script = ScriptDirectory.from_config(migrations.alembic_config(database_url))
        reached = {rev.revision for rev in script.iterate_revisions(tuple(applied), "base")}
        assert set(script.get_heads()) <= reached
        assert {"core_0001", "voip_0001"} <= reached
    finally:
        await database.close()


async def test_rows_survive_a_new_engine_and_constraints_hold(database_url: str) -> None:
    await migrations.upgrade_async(database_url)
    first = Database(database_url)
    async with first.session() as session:
        session.add(Department(code="FIN", name="财政局", name_en="Finance"))
        await audit(session, "tester", "department.add", "FIN", note="中文 detail")
    await first.close()

    second = Database(database_url)
    try:
        async with second.session() as session:
            department = await session.scalar(select(Department).where(Department.code == "FIN"))
            assert department is not None and department.name == "财政局"
            entry = await session.scalar(select(AuditEntry))
            assert entry is not None and entry.detail == {"note": "中文 detail"}
            assert entry.at.year >= 2026
        with pytest.raises(IntegrityError):
            async with second.session() as session:
                session.add(Department(code="FIN", name="duplicate", name_en=""))
        async with second.session() as session:
            count = len((await session.scalars(select(Department))).all())
        assert count == 1, "a failed transaction must leave nothing behind"
    finally:
        await second.close()


async def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}"
    await migrations.upgrade_async(url)
    database = Database(url)
    try:
        async with database.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        assert mode == "wal"
    finally:
        await database.close()
