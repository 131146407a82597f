"""Rooms in the database: the CLI, PINs, the command room, the JSON API."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient
from support.processes import run_cli

from conference import service
from core.context import AppContext


def test_room_add_and_list_from_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path).returncode == 0
    added = run_cli("--config", str(config), "room", "add", "east", "--pin", "4321", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    again = run_cli("--config", str(config), "room", "add", "east", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad_pin = run_cli("--config", str(config), "room", "add", "west", "--pin", "12", cwd=tmp_path)
    assert bad_pin.returncode == 2 and "PIN must be 4-12 digits" in bad_pin.stderr
    listed = run_cli("--config", str(config), "room", "list", cwd=tmp_path)
    assert listed.returncode == 0
    lines = dict(line.split("\t", 1) for line in listed.stdout.splitlines())
    assert "command" in lines["command"] and "no-pin" in lines["command"]
    assert "meeting,pin" in lines["east"]
    removed = run_cli("--config", str(config), "room", "remove", "command", cwd=tmp_path)
    assert removed.returncode == 2 and "always open" in removed.stderr


async def test_pins_are_stored_salted_and_checked(app_context: AppContext) -> None:
    async with app_context.db.session() as session:
        await service.add_room(session, "r1", pin="2468")
        room = await service.get_room(session, "r1")
    assert room.pin_hash is not None and "2468" not in room.pin_hash
    assert service.pin_matches(room.pin_hash, "2468")
    assert not service.pin_matches(room.pin_hash, "2469")
    assert not service.pin_matches(None, "2468")


async def test_room_api_lists_rooms_with_presence(
    client: TestClient, app_context: AppContext
) -> None:
    response = await client.get("/api/conference/rooms")
    assert response.status == 401
    from core.models import Role

    async with app_context.db.session() as session:
        await app_context.auth.create_user(session, "ops", "operator-pw-1", Role.OPERATOR)
    login = await client.post(
        "/api/auth/login", json={"username": "ops", "password": "operator-pw-1"}
    )
    csrf = (await login.json())["csrf_token"]
    created = await client.post(
        "/api/conference/rooms",
        json={"name": "west", "pin": "1357"},
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status == 201, await created.text()
    await app_context.state.hset("conference:presence:west", "B", '{"role": "venue", "node": "n1"}')
    rooms = {r["name"]: r for r in await (await client.get("/api/conference/rooms")).json()}
    assert rooms["command"]["kind"] == "command"
    assert rooms["west"]["has_pin"] and rooms["west"]["venues"] == [
        {"venue": "B", "role": "venue", "node": "n1"}
    ]
    page = await client.get("/conference/west")
    assert page.status == 200 and "conference.js" in await page.text()
    assert (await client.get("/conference/nowhere")).status == 404
