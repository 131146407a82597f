from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("UNICOMM_"):
            monkeypatch.delenv(name)


def test_documented_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNICOMM_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.data_dir == tmp_path / "var"
    assert settings.http_port == 8080
    assert settings.sip_port == 5060
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'unicomm.db'}"
    assert settings.redis_url == ""
    assert settings.timezone == "Asia/Shanghai" and settings.zone.key == "Asia/Shanghai"


def test_file_values_and_paths_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "etc" / "unicomm.toml"
    config.parent.mkdir()
    config.write_text(
        '[unicomm]\nhttp_port = 9090\ndata_dir = "state"\nredis_url = "redis://h:1/0"\n'
    )
    monkeypatch.chdir("/")
    settings = load_settings(config)
    assert settings.http_port == 9090
    assert settings.data_dir == config.parent / "state"
    assert settings.redis_url == "redis://h:1/0"
    assert settings.config_file == config


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text("[unicomm]\nhttp_port = 9090\nsip_port = 5070\n")
    monkeypatch.setenv("UNICOMM_HTTP_PORT", "9191")
    settings = load_settings(config)
    assert settings.http_port == 9191
    assert settings.sip_port == 5070


def test_postgres_url_gets_the_async_driver(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=str(tmp_path), database_url="postgresql://u@h/db")
    assert settings.database_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("[unicomm]\nhttp_port = 'eighty'\n", "http_port"),
        ("[unicomm]\nsip_port = 70000\n", "sip_port"),
        ("[unicomm]\nlog_level = 'LOUD'\n", "log_level"),
        ("[unicomm]\ndatabase_url = 'mysql://x'\n", "database_url"),
        ("[unicomm]\ntimezone = 'Asia/Beijing'\n", "timezone"),
        ("[unicomm]\ntimezone = '../etc/passwd'\n", "timezone"),
        ("[unicomm]\nhttp_prot = 80\n", "http_prot"),
    ],
)
def test_invalid_file_value_names_the_key(tmp_path: Path, content: str, key: str) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=key) as info:
        load_settings(config)
    assert str(config) in str(info.value)


def test_invalid_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNICOMM_SIP_PORT", "-1")
    with pytest.raises(ConfigError, match="environment: invalid value for 'sip_port'"):
        load_settings()


def test_unknown_environment_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNICOMM_HTTP_PROT", "1")
    with pytest.raises(ConfigError, match="UNICOMM_HTTP_PROT"):
        load_settings()


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[unicomm\nhttp_port=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
