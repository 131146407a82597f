"""Run the real ``unicomm`` command and server as a newcomer would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support.servers import free_port

UNICOMM = str(Path(sys.executable).parent / "unicomm")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNICOMM_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UNICOMM, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


class ServerProcess:
    """``unicomm serve`` in a subprocess on free ports, stopped by SIGTERM."""

    def __init__(self, config: Path, log_path: Path, **env: str) -> None:
        self.http_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [UNICOMM, "--config", str(config), "serve"],
            cwd="/",
            env=clean_env(
                UNICOMM_HTTP_PORT=str(self.http_port), UNICOMM_HTTP_HOST="127.0.0.1", **env
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"unicomm serve exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"unicomm serve did not answer: {log_path.read_text()[-2000:]}")

    def stop(self) -> int:
        self.process.terminate()
        try:
            code = self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code
