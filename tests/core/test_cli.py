"""The installed ``unicomm`` command, run from anywhere, as a newcomer would."""

from __future__ import annotations

from pathlib import Path

from support.processes import clean_env, run_cli


def write_config(folder: Path) -> Path:
    config = folder / "site" / "unicomm.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[unicomm]\ndata_dir = "data"\n')
    return config


def test_commands_work_from_any_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    upgrade = run_cli("--config", str(config), "db", "upgrade", cwd=elsewhere)
    assert upgrade.returncode == 0, upgrade.stderr
    assert (config.parent / "data" / "unicomm.db").exists()
    assert not (elsewhere / "var").exists() and not (elsewhere / "data").exists()

    assert (
        run_cli(
            "--config", str(config), "dept", "add", "FIN", "--name", "财政局", cwd=elsewhere
        ).returncode
        == 0
    )
    added = run_cli(
        "--config",
        str(config),
        "ext",
        "add",
        "2001",
        "--name",
        "王芳",
        "--password",
        "s3cret-pass",
        "--department",
        "FIN",
        cwd=Path("/"),
    )
    assert added.returncode == 0, added.stderr
    listed = run_cli("--config", str(config), "ext", "list", cwd=tmp_path)
    assert "2001\t王芳\tFIN\tinternal" in listed.stdout

    user = run_cli(
        "--config", str(config), "user", "add", "ops", "--role", "operator", cwd=elsewhere
    )
    assert user.returncode == 0 and "with password" in user.stdout
    assert "ops\toperator" in run_cli("--config", str(config), "user", "list", cwd=elsewhere).stdout


def test_errors_are_one_clear_line_and_non_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path)

    cases = [
        (("ext", "add", "12", "--name", "x", "--password", "short"), "password"),
        (
            (
                "ext",
                "add",
                "2001",
                "--name",
                "x",
                "--password",
                "long-enough",
                "--department",
                "NOPE",
            ),
            "department",
        ),
        (("user", "add", "bad name!", "--role", "staff", "--password", "long-enough"), "username"),
        (("ext", "remove", "9999"), "no extension 9999"),
    ]
    for args, word in cases:
        result = run_cli("--config", str(config), *args, cwd=tmp_path)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("unicomm: error:") and word in lines[0], (
            result.stderr
        )

    env = clean_env(UNICOMM_HTTP_PORT="eighty")
    bad_env = run_cli("--config", str(config), "user", "list", cwd=tmp_path, env=env)
    assert bad_env.returncode == 2 and "http_port" in bad_env.stderr

    fresh = write_config(tmp_path / "fresh")
    no_schema = run_cli("--config", str(fresh), "ext", "list", cwd=tmp_path)
    assert no_schema.returncode == 1 and "unicomm db upgrade" in no_schema.stderr


def test_demo_prints_logins_and_keeps_them(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = run_cli("--config", str(config), "demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "admin        admin / " in first.stdout and "duty officer duty / " in first.stdout
    assert "extension    1001 / " in first.stdout
    second = run_cli("--config", str(config), "demo", cwd=tmp_path)
    assert second.stdout == first.stdout
