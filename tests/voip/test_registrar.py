"""The registrar against a running server: digest auth, expiry, contacts, persistence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.sipclient import SipClient
from support.sipp import run_sipp
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from voip.models import Binding


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path)
    yield server
    await server.stop()


async def test_register_with_digest_auth_md5_and_sha256_offered(unicomm: Unicomm) -> None:
    phone = await SipClient.connect(unicomm.sip_port)
    request = phone.request("REGISTER", "sip:127.0.0.1", user="1001", headers=[("Expires", "300")])
    phone.send(request)
    challenge = await phone.final()
    assert challenge.status == 401
    algorithms = " ".join(challenge.headers.get_all("WWW-Authenticate"))
    assert "SHA-256" in algorithms and "MD5" in algorithms
    # rport/received filled in (RFC 3581) on the echoed Via.
    via = challenge.top_via
    assert via.params["rport"] == str(phone.port) and via.params["received"] == "127.0.0.1"
    phone.send(phone.authorize(request, challenge, PASSWORD))
    ok = await phone.final()
    assert ok.status == 200
    assert len(ok.contacts) == 1 and ok.contacts[0].params["expires"] in ("299", "300")
    contacts = await unicomm.voip.location.lookup("1001")
    assert [c.transport for c in contacts] == ["UDP"]
    await phone.close()


async def test_wrong_password_and_unknown_extension_look_the_same(unicomm: Unicomm) -> None:
    phone = await SipClient.connect(unicomm.sip_port)
    answers = []
    for user, password in (("1001", "wrong-password"), ("9999", "wrong-password")):
        request = phone.request("REGISTER", "sip:127.0.0.1", user=user)
        phone.send(request)
        challenge = await phone.final()
        phone.send(phone.authorize(request, challenge, password))
        final = await phone.final()
        answers.append((challenge.status, final.status, final.reason))
    assert answers[0] == answers[1] == (401, 403, "Forbidden")
    await phone.close()


async def test_expiry_limits_several_contacts_and_unregister(unicomm: Unicomm) -> None:
    phone = await SipClient.connect(unicomm.sip_port)
    too_short = await phone.register("1002", PASSWORD, expires=10)
    assert too_short.status == 423 and too_short.headers.get("Min-Expires") == "60"
    long = await phone.register("1002", PASSWORD, expires=999999)
    assert long.status == 200 and int(long.contacts[0].params["expires"] or 0) <= 3600
    second = await SipClient.connect(unicomm.sip_port)
    assert (await second.register("1002", PASSWORD)).status == 200
    assert len(await unicomm.voip.location.lookup("1002")) == 2
    gone = await phone.register("1002", PASSWORD, expires=0)
    assert gone.status == 200 and len(gone.contacts) == 1
    # Contact: * with Expires: 0 removes every binding of the extension.
    request = second.request("REGISTER", "sip:127.0.0.1", user="1002", headers=[("Expires", "0")])
    request.headers.set("Contact", "*")
    second.send(request)
    challenge = await second.final()
    second.send(second.authorize(request, challenge, PASSWORD))
    cleared = await second.final()
    assert cleared.status == 200 and not cleared.contacts
    assert await unicomm.voip.location.lookup("1002") == []
    await phone.close()
    await second.close()


async def test_registration_survives_a_restart(tmp_path: Path) -> None:
    first = await start_unicomm(tmp_path)
    phone = await SipClient.connect(first.sip_port)
    assert (await phone.register("1003", PASSWORD)).status == 200
    await first.stop()
    second = await start_unicomm(tmp_path, extensions=(), migrate=False)
    try:
        contacts = await second.voip.location.lookup("1003")
        assert len(contacts) == 1 and contacts[0].source == f"127.0.0.1:{phone.port}"
        async with second.ctx.db.session() as session:
            assert len((await session.scalars(select(Binding))).all()) == 1
    finally:
        await phone.close()
        await second.stop()


async def test_register_over_tcp_and_websocket(unicomm: Unicomm) -> None:
    tcp = await SipClient.connect(unicomm.sip_port, "TCP")
    assert (await tcp.register("1001", PASSWORD)).status == 200
    ws = await SipClient.connect(unicomm.http_port, "WS")
    assert (await ws.register("1002", PASSWORD)).status == 200
    [tcp_contact] = await unicomm.voip.location.lookup("1001")
    [ws_contact] = await unicomm.voip.location.lookup("1002")
    assert tcp_contact.transport == "TCP" and tcp_contact.connection
    assert ws_contact.transport == "WS" and ws_contact.instance == unicomm.voip.instance
    await tcp.close()
    await ws.close()


async def test_sipp_registers_with_digest_auth(unicomm: Unicomm, tmp_path: Path) -> None:
    result = await run_sipp(
        "register_auth",
        f"127.0.0.1:{unicomm.sip_port}",
        users=[("1003", PASSWORD)],
        keys={"domain": "unicomm"},
        work_dir=tmp_path / "sipp",
        timeout=15,
    )
    assert result.ok, result.describe()
    challenged = result.sent_messages[1]
    assert 'Authorization: Digest username="1003"' in challenged, challenged
    [contact] = await unicomm.voip.location.lookup("1003")
    assert contact.user_agent == "SIPp unicomm-test" and contact.transport == "UDP"


async def bindings_of(server: Unicomm) -> list[Binding]:
    async with server.ctx.db.session() as session:
        return list((await session.scalars(select(Binding))).all())


async def test_stream_bindings_go_when_their_connection_closes(unicomm: Unicomm) -> None:
    """RFC 5626/7118: the connection is the flow; once closed, its contacts are unreachable."""
    udp = await SipClient.connect(unicomm.sip_port)
    tcp = await SipClient.connect(unicomm.sip_port, "TCP")
    ws = await SipClient.connect(unicomm.http_port, "WS")
    assert (await udp.register("1001", PASSWORD)).status == 200
    assert (await tcp.register("1002", PASSWORD)).status == 200
    assert (await ws.register("1003", PASSWORD)).status == 200
    assert len(await bindings_of(unicomm)) == 3
    await tcp.close()
    await ws.close()
    for _ in range(50):
        if len(await bindings_of(unicomm)) == 1:
            break
        await asyncio.sleep(0.1)
    assert await unicomm.voip.location.lookup("1002") == []
    assert await unicomm.voip.location.lookup("1003") == []
    [binding] = await bindings_of(unicomm)
    assert binding.transport == "UDP"  # a datagram flow has no connection to lose
    assert len(await unicomm.voip.location.lookup("1001")) == 1
    await udp.close()


async def test_a_binding_moved_to_a_new_connection_stays(unicomm: Unicomm) -> None:
    first = await SipClient.connect(unicomm.sip_port, "TCP")
    assert (await first.register("1002", PASSWORD)).status == 200
    # The phone reconnects and registers the same contact before the old one closes.
    second = await SipClient.connect(unicomm.sip_port, "TCP")
    second.port = first.port  # same Contact URI as the first registration
    assert (await second.register("1002", PASSWORD)).status == 200
    await first.close()
    await asyncio.sleep(0.5)
    [contact] = await unicomm.voip.location.lookup("1002")
    assert contact.transport == "TCP" and len(await bindings_of(unicomm)) == 1
    await second.close()
