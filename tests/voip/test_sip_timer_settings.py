"""SIP timers T1, T2, T4 as settings: validated, and what the transactions and AckWait use."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sipserver import start_unicomm

from core.config import ConfigError, load_settings
from voip.sip.transaction import DEFAULT_TIMERS, TimerSettings


def test_defaults_are_rfc_3261s() -> None:
    settings = load_settings(None)
    assert (settings.sip_t1_ms, settings.sip_t2_ms, settings.sip_t4_ms) == (500, 4000, 5000)
    assert (DEFAULT_TIMERS.t1, DEFAULT_TIMERS.t2, DEFAULT_TIMERS.t4) == (0.5, 4.0, 5.0)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"sip_t1_ms": 49}, "sip_t1_ms"),
        ({"sip_t1_ms": 600, "sip_t2_ms": 599}, "sip_t2_ms"),  # T2 below T1
        ({"sip_t2_ms": 400}, "sip_t2_ms"),  # below the default T1
        ({"sip_t4_ms": 0}, "sip_t4_ms"),
    ],
)
def test_timers_out_of_range_are_refused_naming_the_key(
    tmp_path: Path, values: dict[str, int], key: str
) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text("[unicomm]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_settings(config)


def test_a_lan_t1_with_t2_equal_to_it_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNICOMM_SIP_T1_MS", "50")
    monkeypatch.setenv("UNICOMM_SIP_T2_MS", "50")
    settings = load_settings(None)
    assert (settings.sip_t1_ms, settings.sip_t2_ms) == (50, 50)


async def test_the_server_hands_them_to_its_transaction_layer(tmp_path: Path) -> None:
    server = await start_unicomm(
        tmp_path, extensions=(), sip_t1_ms=100, sip_t2_ms=1500, sip_t4_ms=2500
    )
    try:
        assert server.voip.endpoint is not None
        timers = server.voip.endpoint.layer.timers
        assert timers == TimerSettings(t1=0.1, t2=1.5, t4=2.5)
        assert timers.timeout == pytest.approx(6.4)  # 64*T1: timers B, F, H, J and AckWait's
    finally:
        await server.stop()
