"""MWI by SUBSCRIBE (RFC 3842 §5): a phone that subscribes learns its mailbox's state at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.phones import Phone
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from voip.features.models import VoicemailRow
from voip.sip.message_summary import MessageSummary


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=("1001", "1002"))
    yield server
    await server.stop()


async def test_a_subscribing_phone_gets_the_mailbox_state_without_a_change(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    async with unicomm.ctx.db.session() as session:  # two messages, one heard, left earlier
        session.add(VoicemailRow(mailbox="1001", caller="1002", path="/nowhere/a.wav"))
        session.add(VoicemailRow(mailbox="1001", caller="1002", path="/nowhere/b.wav", heard=True))
    async with (
        Phone.start("alice", log_dir=tmp_path) as alice,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        # The phone subscribes to its address of record: the domain names the exchange's port.
        domain = f"127.0.0.1:{unicomm.sip_port}"
        await alice.register(
            "127.0.0.1", unicomm.sip_port, "1001", PASSWORD, domain=domain, mwi_subscribe=True
        )
        body = await alice.wait_mwi(True, timeout=10)
        summary = MessageSummary.parse(body)
        assert (summary.new, summary.old) == (1, 1) and summary.account.startswith("sip:1001@")
        # An empty mailbox says so too (the NOTIFY comes all the same).
        await bob.register(
            "127.0.0.1", unicomm.sip_port, "1002", PASSWORD, domain=domain, mwi_subscribe=True
        )
        assert "yes" not in (await bob.wait_mwi(False, timeout=10)).lower()
