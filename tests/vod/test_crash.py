"""A server killed in the middle of a transcode: the job runs again or fails, never half an item."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import select
from support.processes import ServerProcess, clean_env, run_cli
from test_transcode import check_hls_item
from vod_media import FAST_ENV, files_under, make_clip

from core.db import utcnow
from vod.models import Job, JobState, Kind, Level
from vod.service import VodService


def call(
    server: ServerProcess,
    token: str,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> Any:
    request = urllib.request.Request(
        server.base_url + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_job(server: ServerProcess, token: str, ready: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = call(server, token, "GET", "/api/vod/jobs")
        if jobs and ready(jobs[0]):
            return dict(jobs[0])
        time.sleep(0.2)
    raise AssertionError(f"job never reached the expected state: {jobs}")


def ffmpeg_running_in(folder: Path) -> bool:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any(line.startswith("ffmpeg") and str(folder) in line for line in listing.splitlines())


def test_killed_mid_transcode_the_job_runs_again_after_restart(tmp_path: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    env = clean_env(**FAST_ENV)
    assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    added = run_cli(
        "--config",
        str(config),
        "vod",
        "station",
        "add",
        "CCTV",
        "--name",
        "中央电视台",
        "--level",
        "central",
        "--kind",
        "tv",
        cwd=tmp_path,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    clip = make_clip(tmp_path / "long.mp4", 20.0)
    data = tmp_path / "var" / "vod"

    # A slow preset keeps the first server busy long enough to be killed mid-way.
    slow = {**FAST_ENV, "UNICOMM_VOD_X264_PRESET": "veryslow"}
    first = ServerProcess(config, tmp_path / "first.log", **slow)
    try:
        token = (tmp_path / "var" / "control.token").read_text().strip()
        queued = call(
            first,
            token,
            "POST",
            "/api/vod/uploads?station=CCTV&title=%E6%96%B0%E9%97%BB",
            clip.read_bytes(),
            "application/octet-stream",
        )
        running = wait_job(first, token, lambda j: j["state"] == "running" and j["progress"] > 0)
        assert running["id"] == queued["job_id"] and running["progress"] < 100
    finally:
        first.process.kill()  # no clean shutdown: SIGKILL
        first.process.wait()
        first._log.close()
    # ffmpeg dies with its server (parent-death signal): no orphan keeps writing.
    deadline = time.monotonic() + 5
    while ffmpeg_running_in(data / "work") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ffmpeg_running_in(data / "work")
    assert list((data / "items").iterdir()) == []  # nothing half-made was published

    second = ServerProcess(config, tmp_path / "second.log", **FAST_ENV)
    try:
        token = (tmp_path / "var" / "control.token").read_text().strip()
        done = wait_job(second, token, lambda j: j["state"] in ("done", "failed"))
        assert done["state"] == "done", done["error"]
        assert done["attempts"] == 2
        items = call(second, token, "GET", "/api/vod/items")
        assert len(items) == 1
    finally:
        second.stop()
    (folder,) = list((data / "items").iterdir())
    check_hls_item(folder, 20.0, video=True)
    assert files_under(data / "work") == [] and files_under(data / "incoming") == []


async def test_a_job_cut_off_twice_fails_instead_of_looping(vod: VodService, tv_clip: Path) -> None:
    async with vod.db.session() as session:
        await vod.add_station(
            session, code="CCTV", name="中央电视台", level=Level.CENTRAL, kind=Kind.TV
        )
    host = vod.node.rpartition("-")[0]
    dead_pid = 2**22 + 12345  # above pid_max: no such process
    jobs = []
    for attempts in (1, 2):
        job = await vod.import_file(
            tv_clip, station_code="CCTV", title=f"cut {attempts}", origin="cli"
        )
        async with vod.db.session() as session:
            row = await session.get(Job, job.id)
            assert row is not None
            row.state, row.attempts, row.node = JobState.RUNNING, attempts, f"{host}-{dead_pid}"
            row.heartbeat_at = utcnow()
        (vod.work / f"job-{job.id}" / "out").mkdir(parents=True)
        jobs.append(job.id)
    # A job of a live process on another node with a fresh heartbeat is left alone.
    other = await vod.import_file(
        tv_clip, station_code="CCTV", title="busy elsewhere", origin="cli"
    )
    async with vod.db.session() as session:
        row = await session.get(Job, other.id)
        assert row is not None
        row.state, row.attempts, row.node, row.heartbeat_at = (
            JobState.RUNNING,
            1,
            "another-host-1",
            utcnow(),
        )

    assert sorted(await vod.recover_jobs()) == jobs
    async with vod.db.session() as session:
        states = {j.id: j for j in (await session.scalars(select(Job))).all()}
    assert states[jobs[0]].state is JobState.QUEUED
    assert states[jobs[1]].state is JobState.FAILED
    assert "interrupted" in states[jobs[1]].error
    assert states[other.id].state is JobState.RUNNING
    assert not (vod.work / f"job-{jobs[0]}").exists() and not (vod.work / f"job-{jobs[1]}").exists()
    assert not await asyncio.to_thread(os.path.exists, states[jobs[1]].source_path)
