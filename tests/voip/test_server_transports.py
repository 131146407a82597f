"""Other transports and a second node: baresip over TCP, a WebSocket phone, TLS, cluster."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.baresip import Baresip
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipclient import SipClient
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import dominant_frequency, write_tone_wav
from voip.sip.message import Request

SDP = (
    b"v=0\r\no=ws 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server")
    yield server
    await server.stop()


async def test_baresip_over_tcp_calls_a_pjsua2_phone(unicomm: Unicomm, tmp_path: Path) -> None:
    """baresip 1.0 (libre 1.1) registers and calls over TCP; audio goes both ways.

    libre 1.1 gives up on a 401 that offers SHA-256 beside MD5 ("Function not
    implemented"): the exchange offers such clients only its first algorithm.
    """
    port = unicomm.sip_port
    tone = write_tone_wav(tmp_path / "tone440.wav", 440.0, 6.0)
    heard_by_bob = tmp_path / "bob-heard.wav"
    async with (
        Baresip.start("carol", log_dir=tmp_path, tone_hz=880) as carol,
        Phone.start("bob", log_dir=tmp_path) as bob,
    ):
        await carol.register("127.0.0.1", port, "1001", PASSWORD, transport="tcp")
        [contact] = await unicomm.voip.location.lookup("1001")
        assert contact.transport == "TCP" and contact.connection
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        await carol.dial(f"sip:1002@127.0.0.1:{port};transport=tcp")
        incoming = await bob.wait_incoming(15)
        await incoming.answer()
        await incoming.wait_state("CONFIRMED")
        await carol.wait_event("CALL_ESTABLISHED", 10)
        await incoming.wait_media()
        await incoming.record(heard_by_bob)
        await incoming.play(tone)
        await asyncio.sleep(3.0)
        await incoming.stop_record()
        await incoming.hangup()
        await carol.wait_event("CALL_CLOSED", 10)
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
        heard_by_carol = carol.recordings_heard()
    # Each side heard the other's tone: media flowed phone to phone both ways.
    assert abs(dominant_frequency(heard_by_bob, skip_seconds=0.5) - 880.0) < 20
    assert heard_by_carol, "baresip wrote no recording"
    assert abs(dominant_frequency(heard_by_carol[-1], skip_seconds=0.5) - 440.0) < 20
    await unicomm.voip.live.drain()
    assert await unicomm.ctx.state.hgetall("voip:calls") == {}


async def answer_invite(phone: SipClient, sdp: bytes) -> Request:
    """Ring and answer the next INVITE like a phone; returns the INVITE."""
    invite = await phone.receive(10)
    assert isinstance(invite, Request) and invite.method == "INVITE"
    phone.send(invite.response(180, to_tag="callee1"))
    ok = invite.response(200, to_tag="callee1", body=sdp)
    ok.headers.add("Contact", f"<sip:1002@{phone.host}:{phone.port}>")
    ok.headers.add("Content-Type", "application/sdp")
    phone.send(ok)
    return invite


async def test_websocket_phone_registers_and_calls(unicomm: Unicomm) -> None:
    ws = await SipClient.connect(unicomm.http_port, "WS")
    callee = await SipClient.connect(unicomm.sip_port)
    assert (await ws.register("1001", PASSWORD)).status == 200
    assert (await callee.register("1002", PASSWORD)).status == 200
    invite = ws.request("INVITE", "sip:1002@unicomm", user="1001", to="1002", body=SDP)
    ws.send(invite)
    challenge = await ws.final()
    assert challenge.status == 407
    ws.send(Request("ACK", invite.uri, challenge.headers.copy()))  # ACK of the 407
    authorized = ws.authorize(invite, challenge, PASSWORD)
    ws.send(authorized)
    answering = asyncio.create_task(answer_invite(callee, b"v=0\r\no=callee 2 2 IN IP4 x\r\n"))
    ok = await ws.final(10)
    b_invite = await answering
    assert ok.status == 200 and b"o=callee" in ok.body
    assert b"o=ws 1 1" in b_invite.body  # SDP passed through unchanged
    # BYE from the WebSocket side ends the callee's leg too.
    ack = ws.request(
        "ACK",
        str(ok.contacts[0].uri),
        user="1001",
        to="1002",
        call_id=invite.call_id,
        cseq=authorized.cseq.number,
    )
    ack.headers.set("To", ok.headers.get("To") or "")
    ack.headers.set("From", authorized.headers.get("From") or "")
    ws.send(ack)
    bye = ws.request("BYE", str(ok.contacts[0].uri), user="1001", to="1002", call_id=invite.call_id)
    bye.headers.set("To", ok.headers.get("To") or "")
    bye.headers.set("From", authorized.headers.get("From") or "")
    ws.send(bye)
    assert (await ws.final()).status == 200
    while True:
        message = await callee.receive(5)
        if isinstance(message, Request) and message.method == "BYE":
            callee.send(message.response(200))
            break
    await ws.close()
    await callee.close()


async def test_tls_registration_with_the_generated_certificate(unicomm: Unicomm) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", unicomm.tls_port, ssl=context)
    phone = SipClient("TLS")
    phone.port = writer.get_extra_info("sockname")[1]
    request = phone.request("REGISTER", "sip:127.0.0.1", user="1003")
    writer.write(bytes(request))
    data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert data.startswith(b"SIP/2.0 401")
    writer.close()
    assert (unicomm.ctx.settings.data_dir / "tls" / "sip-cert.pem").exists()


@pytest.mark.redis
@pytest.mark.postgres
async def test_second_node_finds_a_phone_registered_on_the_first(
    tmp_path: Path, postgres_url: str, redis_server_url: str
) -> None:
    first = await start_unicomm(
        tmp_path / "a", database_url=postgres_url, redis_url=redis_server_url, node_name="node-a"
    )
    second = await start_unicomm(
        tmp_path / "b",
        database_url=postgres_url,
        migrate=False,
        extensions=(),
        redis_url=redis_server_url,
        node_name="node-b",
    )
    phone = await SipClient.connect(first.sip_port)
    try:
        assert (await phone.register("1002", PASSWORD)).status == 200
        [contact] = await second.voip.location.lookup("1002")
        assert contact.node == "node-a" and contact.source == f"127.0.0.1:{phone.port}"
        # And node b routes a call to it (UDP reaches the phone from any node).
        caller = await SipClient.connect(second.sip_port)
        invite = caller.request("INVITE", "sip:1002@unicomm", user="1001", to="1002", body=SDP)
        caller.send(invite)
        challenge = await caller.final()
        caller.send(caller.authorize(invite, challenge, PASSWORD))
        incoming = await phone.receive(10)
        assert isinstance(incoming, Request) and incoming.method == "INVITE"
        await caller.close()
    finally:
        await phone.close()
        await second.stop()
        await first.stop()


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_websocket_phone_on_one_node_is_called_from_the_other(
    tmp_path: Path, postgres_url: str, redis_server_url: str
) -> None:
    """Node b reaches a phone whose WebSocket node a holds: a relays down the connection."""
    first = await start_unicomm(
        tmp_path / "a", database_url=postgres_url, redis_url=redis_server_url, node_name="node-a"
    )
    second = await start_unicomm(
        tmp_path / "b",
        database_url=postgres_url,
        migrate=False,
        extensions=(),
        redis_url=redis_server_url,
        node_name="node-b",
    )
    phone = await SipClient.connect(first.http_port, "WS")
    caller = await SipClient.connect(second.sip_port)
    try:
        # 1003: the cluster tests share one Redis and PostgreSQL, and 1002 is used above.
        assert (await phone.register("1003", PASSWORD)).status == 200
        [contact] = await second.voip.location.lookup("1003")
        assert contact.node == "node-a" and contact.transport == "WS"
        invite = caller.request("INVITE", "sip:1003@unicomm", user="1001", to="1003", body=SDP)
        caller.send(invite)
        challenge = await caller.final()
        caller.send(Request("ACK", invite.uri, challenge.headers.copy()))
        authorized = caller.authorize(invite, challenge, PASSWORD)
        caller.send(authorized)
        answering = asyncio.create_task(answer_invite(phone, b"v=0\r\no=wsphone 2 2 IN IP4 x\r\n"))
        ok = await caller.final(10)
        while ok.cseq.number != authorized.cseq.number:  # a late copy of the 407
            ok = await caller.final(10)
        relayed = await answering
        assert ok.status == 200 and b"o=wsphone" in ok.body
        assert b"o=ws 1 1" in relayed.body
        # Node a record-routed itself: the rest of the dialog comes back through it.
        assert len(relayed.record_routes) == 2
        ack = caller.request(
            "ACK", str(ok.contacts[0].uri), user="1001", to="1003", call_id=invite.call_id,
            cseq=authorized.cseq.number,
        )  # fmt: skip
        ack.headers.set("To", ok.headers.get("To") or "")
        ack.headers.set("From", authorized.headers.get("From") or "")
        caller.send(ack)
        acked = await phone.receive(10)
        assert isinstance(acked, Request) and acked.method == "ACK"
        # The phone hangs up: its BYE follows the Record-Route through node a to node b,
        # and node b's 200 comes back down the WebSocket.
        route = ", ".join(str(entry) for entry in relayed.record_routes)
        bye = phone.request(
            "BYE", str(relayed.contacts[0].uri), user="1003", to="1001",
            call_id=relayed.call_id, headers=[("Route", route)],
        )  # fmt: skip
        bye.headers.set("From", f"{relayed.headers.get('To')};tag=callee1")
        bye.headers.set("To", relayed.headers.get("From") or "")
        phone.send(bye)
        assert (await phone.final()).status == 200
        ended = await caller.receive(10)
        assert isinstance(ended, Request) and ended.method == "BYE"
        caller.send(ended.response(200))
        for _ in range(50):  # the call is over on node b
            if second.voip.b2bua is not None and not second.voip.b2bua.active_calls:
                break
            await asyncio.sleep(0.1)
        assert second.voip.b2bua is not None and second.voip.b2bua.active_calls == 0
    finally:
        await caller.close()
        await phone.close()
        await second.stop()
        await first.stop()
