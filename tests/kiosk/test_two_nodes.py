"""Two ``unicomm serve`` nodes on one PostgreSQL and one Redis: an alert published on
node A reaches a kiosk connected to node B (rule 3 of the architecture), and a change
on A drops the feed B cached before B's kiosks are told to fetch it again."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from support.processes import ServerProcess, clean_env, run_cli

pytestmark = pytest.mark.redis


async def test_alert_on_node_a_reaches_a_kiosk_on_node_b(
    tmp_path: Path, output_dir: Path, redis_server_url: str, postgres_url: str
) -> None:
    shared = {
        "UNICOMM_DATABASE_URL": postgres_url,
        "UNICOMM_REDIS_URL": redis_server_url,
        "UNICOMM_REDIS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
    }
    configs = []
    for node in ("a", "b"):
        folder = tmp_path / node
        folder.mkdir()
        config = folder / "unicomm.toml"
        config.write_text(
            f'data_dir = "var"\nsip_port = 0\nsip_tls_port = 0\nnode_name = "{node}"\n'
        )
        configs.append(config)

    def cli(*args: str) -> str:
        done = run_cli("--config", str(configs[0]), *args, cwd=tmp_path, env=clean_env(**shared))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    cli("db", "upgrade")
    cli("user", "add", "duty", "--role", "duty_officer", "--password", "password-123")
    token = cli("token", "add", "duty")
    cli("kiosk", "group", "add", "G1", "--name", "长安街", "--district", "东城")
    cli("kiosk", "group", "add", "G2", "--name", "西单", "--district", "西城")

    a = ServerProcess(configs[0], output_dir / "node-a.log", **shared)
    try:
        b = ServerProcess(configs[1], output_dir / "node-b.log", **shared)
    except BaseException:
        a.stop()
        raise
    try:
        async with aiohttp.ClientSession() as http:
            # The kiosk pairs through node A and then lives on node B.
            async def paired(name: str, group: str) -> str:
                async with http.post(f"{a.base_url}/kiosk/api/pairings") as started:
                    pairing = await started.json()
                await asyncio.to_thread(
                    cli, "kiosk", "approve", pairing["code"], "--name", name, "--group", group
                )
                claim = {"claim": pairing["claim"]}
                async with http.post(f"{b.base_url}/kiosk/api/pairings/claim", json=claim) as done:
                    assert done.status == 200
                    return str((await done.json())["token"])

            east, west = await paired("east", "G1"), await paired("west", "G2")
            sockets = {}
            for name, device in (("east", east), ("west", west)):
                socket = await http.ws_connect(f"{b.base_url}/kiosk/api/live")
                await socket.send_str(json.dumps({"token": device}))
                assert json.loads((await socket.receive(timeout=5)).data)["type"] == "hello"
                sockets[name] = socket

            # Published on A, to the east district only.
            bearer = {"Authorization": f"Bearer {token}"}
            started = time.monotonic()
            async with http.post(
                f"{a.base_url}/api/kiosk/alerts",
                json={"headline": "暴雨红色预警", "districts": ["东城"]},
                headers=bearer,
            ) as published:
                assert published.status == 201, await published.text()
                alert = await published.json()
            while True:
                message = json.loads((await sockets["east"].receive(timeout=2)).data)
                if message["type"] == "alert":
                    break
            elapsed = time.monotonic() - started
            assert message["alert"]["id"] == alert["id"]
            assert message["alert"]["headline"] == "暴雨红色预警"
            assert elapsed < 2.0, f"alert took {elapsed:.2f} s across nodes"

            # Cancelled on B, cleared on B's kiosk; the west kiosk heard neither.
            async with http.post(
                f"{b.base_url}/api/kiosk/alerts/{alert['id']}/cancel", headers=bearer
            ) as cancelled:
                assert cancelled.status == 200
            while True:
                message = json.loads((await sockets["east"].receive(timeout=2)).data)
                if message["type"] == "alert_cleared":
                    break
            with pytest.raises(asyncio.TimeoutError):
                while True:
                    heard = json.loads((await sockets["west"].receive(timeout=0.5)).data)
                    assert heard["type"] not in ("alert", "alert_cleared"), heard

            # B caches the east kiosk's feed; a change on A drops it there through the bus,
            # before the push reaches the kiosk, so the kiosk's next fetch gets the change.
            device = {"Authorization": f"Bearer {east}"}
            feed_url = f"{b.base_url}/kiosk/api/feed"
            async with http.get(feed_url, headers=device) as before:
                assert before.status == 200
                cached = before.headers["ETag"]
            async with http.get(feed_url, headers={**device, "If-None-Match": cached}) as same:
                assert same.status == 304
            async with http.post(
                f"{a.base_url}/api/kiosk/alerts", json={"headline": "大风蓝色预警"}, headers=bearer
            ) as published:
                assert published.status == 201, await published.text()
            while True:
                message = json.loads((await sockets["east"].receive(timeout=2)).data)
                if message["type"] == "alert":
                    break
            async with http.get(feed_url, headers={**device, "If-None-Match": cached}) as after:
                assert after.status == 200
                alerts = (await after.json())["alerts"]
                assert [alert["headline"] for alert in alerts] == ["大风蓝色预警"]
            for socket in sockets.values():
                await socket.close()
    finally:
        b.stop()
        a.stop()
