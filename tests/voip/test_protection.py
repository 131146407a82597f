"""Attacks and bad input against a running exchange: answers or drops, never a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.sipclient import SipClient
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from voip.sip.message import Response
from voip.sip.parser import parse_head

OTHER = "127.0.0.2"  # a second loopback source: a phone that must keep working


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(
        tmp_path, sip_ban_threshold=5, sip_scan_threshold=10, sip_rate_limit=50
    )
    yield server
    await server.stop()


async def still_serves(server: Unicomm) -> None:
    phone = await SipClient.connect(server.sip_port, local_host=OTHER)
    try:
        assert (await phone.register("1003", PASSWORD)).status == 200
    finally:
        await phone.close()


async def run(*command: str, server: Unicomm | None = None) -> str:
    """Run a sipvicious tool; once ``server`` has banned us, give it a second and stop it."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = asyncio.ensure_future(process.communicate())
    for _ in range(300):
        if output.done():
            break
        if server is not None and server.voip.protection.is_banned("127.0.0.1"):
            await asyncio.sleep(1.0)
            if process.returncode is None:
                process.terminate()
            break
        await asyncio.sleep(0.1)
    stdout, _ = await asyncio.wait_for(output, 30)
    return stdout.decode(errors="replace")


async def test_svwar_finds_no_extension(unicomm: Unicomm) -> None:
    output = await run(
        "svwar",
        "-p",
        str(unicomm.sip_port),
        "-e",
        "1000-1010",
        "--force",
        "--maximumtime=6",
        "127.0.0.1",
    )
    # Every REGISTER gets the same challenge, so no number stands out as existing.
    assert "found nothing" in output or "| Extension" not in output, output
    for number in ("1001", "1002", "1003"):
        assert f"| {number}" not in output, output


async def test_svcrack_cracks_nothing_and_is_banned(unicomm: Unicomm, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    # The right password comes after the ban threshold: it must never be tried for real.
    words.write_text("\n".join(f"guess{i}" for i in range(20)) + f"\n{PASSWORD}\n")
    output = await run(
        "svcrack",
        "-p",
        str(unicomm.sip_port),
        "-u",
        "1001",
        "-d",
        str(words),
        "--maximumtime=6",
        "127.0.0.1",
        server=unicomm,
    )
    assert PASSWORD not in output, output
    assert unicomm.voip.protection.is_banned("127.0.0.1")
    # Banned: dropped silently, even an OPTIONS.
    banned = await SipClient.connect(unicomm.sip_port)
    banned.send(banned.request("OPTIONS", "sip:127.0.0.1", user="1001"))
    with pytest.raises(TimeoutError):
        await banned.receive(1.0)
    await banned.close()
    await still_serves(unicomm)


async def test_flood_is_limited_and_others_are_served(unicomm: Unicomm) -> None:
    flooder = await SipClient.connect(unicomm.sip_port)
    for _ in range(800):
        flooder.send(flooder.request("OPTIONS", "sip:127.0.0.1", user="1001"))
    # A loaded machine may take a while to read 800 datagrams: wait for the verdict
    # instead of guessing how long it takes.
    deadline = asyncio.get_running_loop().time() + 15
    while not unicomm.voip.protection.is_banned("127.0.0.1"):
        assert asyncio.get_running_loop().time() < deadline, "the flood never got banned"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    answered = flooder.inbox.qsize()
    assert 0 < answered < 400  # the limit per one-second window, the rest dropped
    await flooder.close()
    await still_serves(unicomm)


HEAD = (
    "{method} sip:1002@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1001@unicomm>;tag=1\r\n"
    "To: <sip:1002@unicomm>\r\n"
    "Call-ID: {branch}@test\r\n"
    "CSeq: 1 {method}\r\n"
)


async def test_bad_input_gets_an_answer_or_a_drop(unicomm: Unicomm) -> None:
    client = await SipClient.connect(unicomm.sip_port)

    def head(method: str, branch: str) -> str:
        return HEAD.format(method=method, port=client.port, branch=branch)

    async def answer() -> Response | None:
        # From the raw bytes: an answer to a malformed request copies its bad headers.
        try:
            data = await asyncio.wait_for(client.raw.get(), 1.5)
        except TimeoutError:
            return None
        message = parse_head(data)
        assert isinstance(message, Response)
        return message

    # Bad Content-Length: a clear 400.
    client.send_raw((head("OPTIONS", "a1") + "Content-Length: 900\r\n\r\nv=0\r\n").encode())
    assert (bad_length := await answer()) is not None and bad_length.status == 400
    # Malformed header (CSeq) in an otherwise framed message: 400.
    client.send_raw(head("OPTIONS", "a2").replace("CSeq: 1", "CSeq: x").encode() + b"\r\n")
    assert (malformed := await answer()) is not None and malformed.status == 400
    # Truncated in the middle of the headers: 400 if it can be answered at all.
    client.send_raw(head("OPTIONS", "a3").encode()[:-20])
    truncated = await answer()
    assert truncated is None or truncated.status == 400
    # Oversized: 413.
    big = head("OPTIONS", "a4") + f"X-Pad: {'x' * 20000}\r\nContent-Length: 0\r\n\r\n"
    client.send_raw(big.encode())
    assert (oversized := await answer()) is not None and oversized.status == 413
    # Unknown and unsupported methods: 501 / 405, both with Allow.
    client.send_raw((head("FROBNICATE", "a5") + "Content-Length: 0\r\n\r\n").encode())
    assert (unknown := await answer()) is not None and unknown.status == 501
    assert "INVITE" in (unknown.headers.get("Allow") or "")
    client.send_raw((head("PUBLISH", "a6") + "Content-Length: 0\r\n\r\n").encode())
    assert (unsupported := await answer()) is not None and unsupported.status == 405
    # Garbage and a CRLF keep-alive: dropped without an answer.
    client.send_raw(b"\x00\xff garbage \x01")
    client.send_raw(b"\r\n\r\n")
    assert await answer() is None
    # OPTIONS is answered 200 with Allow.
    client.send_raw((head("OPTIONS", "a7") + "Content-Length: 0\r\n\r\n").encode())
    assert (options := await answer()) is not None and options.status == 200
    assert "BYE" in (options.headers.get("Allow") or "")
    await client.close()


async def test_stream_framing_errors_close_only_that_connection(unicomm: Unicomm) -> None:
    tcp = await SipClient.connect(unicomm.sip_port, "TCP")
    tcp.send_raw(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKq\r\n\r\n")  # no C-L
    await asyncio.sleep(0.3)
    await tcp.close()
    # A CRLF ping on a stream is answered with a pong (RFC 5626 §3.5.1).
    ping = await SipClient.connect(unicomm.sip_port, "TCP")
    ping.send_raw(b"\r\n\r\n")
    assert await asyncio.wait_for(ping.raw.get(), 2) == b"\r\n"
    await ping.close()
    await still_serves(unicomm)


async def test_wrong_password_is_403_and_counted_only_after_the_challenge(
    unicomm: Unicomm,
) -> None:
    phone = await SipClient.connect(unicomm.sip_port)
    for _ in range(6):
        request = phone.request("REGISTER", "sip:127.0.0.1", user="1001")
        phone.send(request)
        assert (await phone.final()).status == 401  # challenges alone never ban
    assert not unicomm.voip.protection.is_banned("127.0.0.1")
    assert (await phone.register("1001", "not-the-password")).status == 403
    assert not unicomm.voip.protection.is_banned("127.0.0.1")
    await phone.close()
