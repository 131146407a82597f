"""``unicomm vod ...`` as an operator runs it.

The installed command runs once as a subprocess (import); the other commands go
through the same ``main()`` in this process, which spares the interpreter start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from support.processes import clean_env, run_cli
from vod_media import FAST_ENV

from core.cli import main


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() points the logs at the captured stderr; later tests need the real one back."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_station_import_list_and_purge(
    restore_logging: None,
    tmp_path: Path,
    tv_clip: Path,
    radio_clip: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "site" / "unicomm.toml"
    config.parent.mkdir()
    config.write_text('[unicomm]\ndata_dir = "data"\n')
    for name, value in FAST_ENV.items():
        monkeypatch.setenv(name, value)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(["--config", str(config), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert cli("db", "upgrade")[0] == 0
    code, out, err = cli(
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
    )
    assert code == 0, err
    assert (
        cli(
            "vod",
            "station",
            "add",
            "CNR",
            "--name",
            "中央人民广播电台",
            "--level",
            "central",
            "--kind",
            "radio",
            "--retention-days",
            "7",
        )[0]
        == 0
    )

    installed = run_cli(
        "--config",
        str(config),
        "vod",
        "import",
        str(tv_clip),
        "--station",
        "CCTV",
        "--title",
        "新闻联播",
        "--broadcast-at",
        "2026-11-20T19:00:00+08:00",
        cwd=tmp_path,
        env=clean_env(**FAST_ENV),
    )
    assert installed.returncode == 0, installed.stderr
    assert "imported item 1: 新闻联播" in installed.stdout
    # An old programme: its days are over, the purge removes it.
    code, out, err = cli(
        "vod",
        "import",
        str(radio_clip),
        "--station",
        "CNR",
        "--title",
        "旧闻",
        "--broadcast-at",
        "2020-01-01T07:00:00+08:00",
    )
    assert code == 0, err

    code, out, _ = cli("vod", "list")
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[1:4] == ["2026-11-20 19:00", "CCTV", "tv"]
    assert cli("vod", "list", "--search", "新闻")[1].count("\n") == 1

    code, out, _ = cli("vod", "purge")
    assert code == 0 and "purged 1 expired" in out
    assert "旧闻" not in cli("vod", "list")[1]
    data = config.parent / "data" / "vod"
    assert len(list((data / "items").iterdir())) == 1

    for args, word in [
        (
            ("vod", "import", str(tmp_path / "missing.mp4"), "--station", "CCTV", "--title", "x"),
            "is not a file",
        ),
        (("vod", "import", str(config), "--station", "CCTV", "--title", "x"), "not a readable"),
        (("vod", "import", str(tv_clip), "--station", "NOPE", "--title", "x"), "no station"),
        (
            (
                "vod",
                "import",
                str(tv_clip),
                "--station",
                "CCTV",
                "--title",
                "x",
                "--broadcast-at",
                "yesterday",
            ),
            "ISO time",
        ),
        (
            ("vod", "station", "add", "CCTV", "--name", "x", "--level", "city", "--kind", "tv"),
            "already exists",
        ),
    ]:
        code, out, err = cli(*args)
        lines = err.strip().splitlines()
        assert code != 0 and lines[-1].startswith("unicomm: error:") and word in lines[-1], err
    assert not list((data / "incoming").iterdir())
