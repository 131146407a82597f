"""``unicomm ext import`` and ``unicomm calls`` as a newcomer runs them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from support.processes import ServerProcess, clean_env, run_cli
from support.servers import free_port

from core.state import RedisState
from voip.service import LIVE_CALLS_KEY


def write_config(folder: Path) -> Path:
    config = folder / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    assert run_cli("--config", str(config), "db", "upgrade", cwd=folder).returncode == 0
    return config


def test_ext_import_prints_a_report_and_fails_when_a_row_failed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert (
        run_cli(
            "--config", str(config), "dept", "add", "FIN", "--name", "财政局", cwd=tmp_path
        ).returncode
        == 0
    )
    good = tmp_path / "good.csv"
    good.write_bytes("\ufeffnumber,name,department,password\n2001,王芳,FIN,s3cret-pass\n".encode())
    result = run_cli("--config", str(config), "ext", "import", str(good), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "imported 2001" in result.stdout and "1 imported, 0 rows refused" in result.stdout

    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        "number,name,department,password,class_of_service\n"
        "2002,李娜,FIN,s3cret-pass,local\n"
        "2001,重复,FIN,s3cret-pass,\n"
        "2003,陈静,NOPE,s3cret-pass,\n",
        encoding="utf-8",
    )
    result = run_cli("--config", str(config), "ext", "import", str(mixed), cwd=tmp_path)
    assert result.returncode == 1
    assert "line 3: number: extension 2001 already exists" in result.stdout
    assert "line 4: department: no department with code 'NOPE'" in result.stdout
    assert "1 imported, 2 rows refused" in result.stdout
    listed = run_cli("--config", str(config), "ext", "list", cwd=tmp_path).stdout
    assert "2002\t李娜\tFIN\tlocal" in listed and "2003" not in listed

    edited = run_cli(
        "--config", str(config), "ext", "edit", "2002", "--no-department", "--disable", cwd=tmp_path
    )
    assert edited.returncode == 0 and "changed department, enabled" in edited.stdout
    assert (
        "2002\t李娜\t-\tlocal\t(disabled)"
        in run_cli("--config", str(config), "ext", "list", cwd=tmp_path).stdout
    )

    missing = run_cli(
        "--config", str(config), "ext", "import", str(tmp_path / "nope.csv"), cwd=tmp_path
    )
    assert missing.returncode == 2 and missing.stderr.startswith("unicomm: error: cannot read")


def test_calls_without_a_server_is_one_clear_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run_cli("--config", str(config), "calls", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the server is not running" in lines[0]


@pytest.mark.redis
def test_calls_lists_the_live_calls_of_the_running_server(
    tmp_path: Path, redis_server_url: str
) -> None:
    config = write_config(tmp_path)
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    server = ServerProcess(
        config,
        tmp_path / "serve.log",
        UNICOMM_REDIS_URL=redis_server_url,
        UNICOMM_REDIS_NAMESPACE=namespace,
        UNICOMM_SIP_PORT=str(free_port()),
        UNICOMM_SIP_TLS_PORT=str(free_port()),
        UNICOMM_SIP_HOST="127.0.0.1",
    )
    # The command finds the server through the same settings: here, its port.
    env = clean_env(UNICOMM_HTTP_PORT=str(server.http_port))
    try:
        empty = run_cli("--config", str(config), "calls", cwd=tmp_path, env=env)
        assert "no live calls" in empty.stdout, empty.stderr
        started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=75)

        async def publish() -> None:
            state = RedisState(redis_server_url, namespace)
            try:
                await state.hset(
                    LIVE_CALLS_KEY,
                    "call-abc@10.0.0.5",
                    json.dumps(
                        {
                            "call_id": "call-abc@10.0.0.5",
                            "caller": "1001",
                            "callee": "2001",
                            "state": "answered",
                            "started_at": started.isoformat(),
                            "answered_at": (started + dt.timedelta(seconds=5)).isoformat(),
                            "node": "node-a",
                        }
                    ),
                )
            finally:
                await state.close()

        asyncio.run(publish())
        result = run_cli("--config", str(config), "calls", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.strip().splitlines()
        assert header.split() == [
            "CALL-ID",
            "CALLER",
            "CALLEE",
            "STATE",
            "STARTED",
            "DURATION",
            "NODE",
        ]
        cells = row.split()
        assert cells[:4] == ["call-abc@10.0.0.5", "1001", "2001", "answered"]
        assert cells[5].endswith("+08:00")  # the city's time (timezone), with its offset
        assert cells[-2].startswith("0:01:") and cells[-1] == "node-a"
    finally:
        assert server.stop() == 0
