"""The IVR: its sans-I/O menu, its options as data, and a real phone navigating it.

The phone test presses a key by RFC 4733 (pjsua2's default DTMF) at a media worker,
which sends the caller on by REFER; the chosen phone rings, answers and hears the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, write_tone_wav
from voip import PBX
from voip.features.ivr import (
    Hangup,
    IvrMenu,
    MenuMachine,
    Play,
    Transfer,
    check_menu,
    format_options,
    parse_options,
)

MENU = IvrMenu(
    "700",
    "Front desk",
    "Press 1 for the office, 2 for the help desk.",
    {"1": "1002", "2": "1003"},
    language="en",
    timeout_seconds=3,
    retries=1,
)


def test_a_listed_digit_transfers_at_once() -> None:
    machine = MenuMachine(MENU)
    assert machine.start() == [Play("greeting")]
    assert machine.digit("2") == [Transfer("1003")]
    assert machine.finished and machine.digit("1") == [] and machine.timeout() == []


def test_wrong_digits_and_silence_repeat_then_say_goodbye() -> None:
    machine = MenuMachine(MENU)
    machine.start()
    assert machine.digit("9") == [Play("invalid"), Play("greeting")]
    assert machine.timeout() == [Play("goodbye"), Hangup()]  # retries=1: the second miss ends it
    assert machine.finished


def test_a_menu_without_retries_ends_at_the_first_silence() -> None:
    machine = MenuMachine(IvrMenu("701", "x", "Hello", {"1": "1002"}, retries=0))
    machine.start()
    assert machine.timeout() == [Play("goodbye"), Hangup()]


def test_options_round_trip_and_refuse_what_is_wrong() -> None:
    assert parse_options("1=1002, 2=600 #=1003") == {"1": "1002", "2": "600", "#": "1003"}
    assert parse_options(format_options(MENU.options)) == MENU.options
    assert parse_options("") == {}
    for bad in ("12=1002", "x=1002", "1=ab", "1=1002,1=1003", "1"):
        with pytest.raises(ValueError):
            parse_options(bad)


def test_a_menu_is_checked_before_it_is_saved() -> None:
    assert check_menu(MENU) is MENU
    for bad in (
        IvrMenu("7", "x", "hi"),
        IvrMenu("700", "x", "  "),
        IvrMenu("700", "x", "hi", language="fr"),
        IvrMenu("700", "x", "hi", {"1": "700"}),
        IvrMenu("700", "x", "hi", timeout_seconds=0),
    ):
        with pytest.raises(ValueError):
            check_menu(bad)


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(
        tmp_path / "server", extensions=("1001", "1002", "1003"), voip_media_workers=1
    )
    yield server
    await server.stop()


async def test_a_caller_navigates_the_ivr_by_rfc4733_and_lands_on_the_extension(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    ivr = unicomm.http.app[PBX].features.ivr
    await ivr.save(MENU)
    await ivr.phrase(MENU, "greeting")  # spoken once now, as a saved menu is at the console
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 8.0)
    heard = tmp_path / "heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
        Phone.start("carol", log_dir=tmp_path) as carol,
    ):
        for phone, number in ((alice, "1001"), (bob, "1002"), (carol, "1003")):
            await phone.register("127.0.0.1", port, number, PASSWORD)
        call = await alice.call(f"sip:700@127.0.0.1:{port}")
        await call.wait_state("CONFIRMED")  # the attendant answered
        await call.wait_media()
        await asyncio.sleep(0.8)  # into the greeting
        await call.send_dtmf("2")
        at_carol = await carol.wait_incoming(timeout=10)
        await at_carol.answer()
        await at_carol.wait_state("CONFIRMED")
        await at_carol.wait_media()
        await at_carol.record(heard)
        await call.play(tone)
        await asyncio.sleep(2.0)
        await at_carol.stop_record()
        assert call.state is not None and call.state.state == "CONFIRMED"
        assert bob.events.find(lambda e: e.get("event") == "incoming") is None
        await call.hangup()
        await at_carol.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440) < 15
    pool = unicomm.http.app[PBX].pool
    assert pool is not None
    for _ in range(50):  # the worker reports its call gone a moment after our BYE
        if not any(w.sessions for w in pool.workers):
            break
        await asyncio.sleep(0.1)
    assert not any(w.sessions for w in pool.workers)  # the transfer freed the slot
