"""Busy lamps (RFC 4235): a watcher's SUBSCRIBE to a colleague's dialog events, then NOTIFYs.

The watcher is the scripted SIP client (pjsua2's binding has no dialog-event
subscription); the watched extension's calls are made by real pjsua2 phones.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.phones import Phone
from support.sipclient import SipClient
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from voip.sip.dialog_info import DialogState, dialog_info
from voip.sip.message import Request, Response

NS = "{urn:ietf:params:xml:ns:dialog-info}"


def states(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    return [d.findtext(f"{NS}state") or "" for d in root.findall(f"{NS}dialog")]


def test_the_body_is_full_state_and_escaped() -> None:
    body = dialog_info('sip:1002@x"y', 3, [DialogState("a1", "early", "recipient")])
    root = ET.fromstring(body)
    assert root.get("version") == "3" and root.get("state") == "full"
    assert root.get("entity") == 'sip:1002@x"y'
    assert states(body) == ["early"]
    assert states(dialog_info("sip:1002@x", 0, [])) == []
    with pytest.raises(ValueError):
        dialog_info("sip:1002@x", 0, [DialogState("a", "ringing", "recipient")])


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", extensions=("1001", "1002", "1003"))
    yield server
    await server.stop()


async def next_notify(client: SipClient) -> Request:
    while True:
        message = await client.receive(10)
        if isinstance(message, Request) and message.method == "NOTIFY":
            client.send(message.response(200))
            return message


async def test_a_lamp_follows_a_colleagues_calls(unicomm: Unicomm, tmp_path: Path) -> None:
    port = unicomm.sip_port
    client = await SipClient.connect(port)
    try:
        subscribe = client.request(
            "SUBSCRIBE",
            f"sip:1002@127.0.0.1:{port}",
            user="1003",
            to="1002",
            headers=[
                ("Event", "dialog"),
                ("Expires", "600"),
                ("Accept", "application/dialog-info+xml"),
            ],
        )
        client.send(subscribe)
        challenge = await client.final()
        assert challenge.status == 401
        client.send(client.authorize(subscribe, challenge, PASSWORD))
        ok = await client.final()
        assert isinstance(ok, Response) and ok.status == 200
        first = await next_notify(client)
        assert first.headers.get("Event") == "dialog" and states(first.body) == []  # idle

        async with (
            Phone.start("alice", log_dir=tmp_path) as alice,
            Phone.start("bob", log_dir=tmp_path) as bob,
        ):
            await alice.register("127.0.0.1", port, "1001", PASSWORD)
            await bob.register("127.0.0.1", port, "1002", PASSWORD)
            call = await alice.call(f"sip:1002@127.0.0.1:{port}")
            at_bob = await bob.wait_incoming()
            assert states((await next_notify(client)).body) == ["early"]  # ringing
            await at_bob.answer()
            await call.wait_state("CONFIRMED")
            assert states((await next_notify(client)).body) == ["confirmed"]  # talking
            await call.hangup()
            await at_bob.wait_state("DISCONNECTED")
            assert states((await next_notify(client)).body) == []  # idle again
    finally:
        await client.close()
