"""SIGKILL in the middle of a 2,000-recipient broadcast: it finishes, nobody texted twice."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

from support.processes import ServerProcess, run_cli
from support.servers import free_port

from sms.testing.twilio_server import read_log

ACCOUNT = "AC" + "2" * 32
TOKEN = "crash-test-token"
RECIPIENTS = 2000


def _start_twilio(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sms.testing.twilio_server",
            "--port",
            str(port),
            "--log",
            str(log),
            "--account-sid",
            ACCOUNT,
            "--auth-token",
            TOKEN,
            "--delay",
            "0,0.5",
            "--reorder-ratio",
            "0.2",
            "--undelivered-ratio",
            "0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            import urllib.request

            urllib.request.urlopen(f"{url}/2010-04-01/Accounts/x/Messages.json", timeout=1)
        except urllib.error.HTTPError:
            return process, url  # it answers (401): it is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("local Twilio server did not start")


def _counts(config: Path, broadcast_id: str, cwd: Path) -> dict[str, int]:
    status = run_cli("--config", str(config), "sms", "status", broadcast_id, cwd=cwd)
    assert status.returncode == 0, status.stderr
    pairs = (line.split("\t") for line in status.stdout.splitlines()[1:])
    return {state: int(count) for state, count in pairs}


def test_sigkill_mid_broadcast_finishes_and_sends_each_once(tmp_path: Path) -> None:
    twilio_log = tmp_path / "twilio.jsonl"
    twilio, twilio_url = _start_twilio(twilio_log)
    config = tmp_path / "unicomm.toml"
    config.write_text(
        '[unicomm]\ndata_dir = "data"\nsms_provider = "twilio"\n'
        f'twilio_account_sid = "{ACCOUNT}"\ntwilio_auth_token = "{TOKEN}"\n'
        f'twilio_from = "+15005550006"\ntwilio_api_base = "{twilio_url}"\n'
        "sms_rate_per_second = 400\nsms_in_doubt_seconds = 1.0\nsms_status_poll_seconds = 2.0\n"
        "sms_approval_threshold = 0\n"
    )
    csv_file = tmp_path / "staff.csv"
    csv_file.write_text(
        "name,mobile,department,role\n"
        + "".join(f"人员{i},139{i:08d},EMERG,staff\n" for i in range(RECIPIENTS))
    )
    cli = lambda *args: run_cli("--config", str(config), *args, cwd=tmp_path)  # noqa: E731
    servers: list[ServerProcess] = []
    try:
        assert cli("db", "upgrade").returncode == 0
        assert cli("dept", "add", "EMERG", "--name", "应急管理局").returncode == 0
        assert cli("sms", "import", str(csv_file)).returncode == 0
        servers.append(ServerProcess(config, tmp_path / "serve-1.log"))
        sent = cli("sms", "send", "--department", "EMERG", "--text", "【应急】请立即到岗。")
        assert sent.returncode == 0, sent.stderr
        broadcast_id = sent.stdout.strip()

        deadline = time.monotonic() + 60
        while len(read_log(twilio_log)) < RECIPIENTS // 4:
            assert time.monotonic() < deadline, "the broadcast did not start"
            time.sleep(0.05)
        servers[0].process.kill()  # SIGKILL: no cleanup, requests cut mid-flight
        servers[0].process.wait()
        accepted_at_kill = len(read_log(twilio_log))
        assert accepted_at_kill < RECIPIENTS, "killed too late to prove anything"

        servers.append(ServerProcess(config, tmp_path / "serve-2.log"))
        deadline = time.monotonic() + 90
        while True:
            counts = _counts(config, broadcast_id, tmp_path)
            if counts["delivered"] + counts["undelivered"] == RECIPIENTS:
                break
            assert time.monotonic() < deadline, f"broadcast did not finish: {counts}"
            time.sleep(0.5)
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.stop()
            server._log.close()
        twilio.terminate()
        twilio.wait(10)

    log = read_log(twilio_log)
    per_number = collections.Counter(record["to"] for record in log)
    assert len(per_number) == RECIPIENTS
    assert set(per_number.values()) == {1}, [n for n, c in per_number.items() if c > 1][:5]
    expected = collections.Counter(record["outcome"] for record in log)
    assert counts["undelivered"] == expected["undelivered"]
    assert counts["delivered"] == expected["delivered"]
