"""baresip as a test peer: it calls a pjsua2 phone directly and the call connects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.baresip import Baresip
from support.phones import Phone

from media.audio import dominant_frequency


async def test_baresip_calls_a_pjsua2_phone_and_its_tone_arrives(tmp_path: Path) -> None:
    heard = tmp_path / "heard.wav"
    async with (
        Phone.start("desk", log_dir=tmp_path) as desk,
        Baresip.start("soft", log_dir=tmp_path, tone_hz=1000) as soft,
    ):
        await soft.dial(desk.uri)
        incoming = await desk.wait_incoming()
        await incoming.record(heard)
        await incoming.answer()
        await incoming.wait_state("CONFIRMED")
        await soft.wait_event("CALL_ESTABLISHED")
        await incoming.wait_media()
        await asyncio.sleep(1.0)
        await incoming.stop_record()

        await soft.hangup()
        await incoming.wait_state("DISCONNECTED")
        await soft.wait_event("CALL_CLOSED")
    assert dominant_frequency(heard, skip_seconds=0.2) == pytest.approx(1000.0, abs=10.0)
