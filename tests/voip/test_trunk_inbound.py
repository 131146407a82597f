"""Calls from the carrier: DIDs to an extension, a ring group and the IVR, with real peers.

The carrier is a pjsua2 phone (two-way audio, RFC 4733 digits) or SIPp (exact
messages) on 127.0.0.2, calling from the trunk's own port; the phones live on
127.0.0.3 and the exchange on 127.0.0.1. Every message either side receives is
searched for the other side's address: the media goes through the relay, so the
carrier sees only the exchange and the phones see only the exchange.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Call, Phone
from support.ports import free_sip_port
from support.processes import run_cli
from support.sipp import Sipp, SippResult, run_sipp
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from core.context import AppContext
from core.models import AuditEntry, Role
from media.audio import dominant_frequency, write_tone_wav
from voip import PBX, service
from voip.did import Did, DidKind, candidates, check, normalise
from voip.features.ivr import IvrMenu
from voip.features.ringgroups import RingGroup, Strategy
from voip.models import CallRecord, Disposition
from voip.rtp_relay import RtpRelay

CARRIER = "127.0.0.2"
PHONES = "127.0.0.3"
STRANGER = "127.0.0.4"
PUBLIC = "127.0.0.5"  # the exchange as the carrier sees it (its NAT's address)
CALLER = "13912345678"  # the outside caller's number, as the carrier presents it
DID_DESK = "01088880001"  # -> extension 1001
DID_GROUP = "01088880002"  # -> ring group 600 (1002, 1003)
DID_MENU = "01088880003"  # -> IVR menu 700 (1 -> 1002)
MENU = IvrMenu(
    "700", "Switchboard", "Press 1 for the office.", {"1": "1002"}, language="en", retries=1
)


# -- the DID table, sans-I/O -----------------------------------------------------------------


def test_dids_are_normalised_and_looked_up_in_every_form() -> None:
    assert normalise(" 010-8888 0001 ") == "01088880001"
    assert check(Did("+86 10 8888 0001", DidKind.IVR, "700")).did == "+861088880001"
    assert candidates("+861088880001", "trunkuser", None, "") == [
        "+861088880001",
        "861088880001",
        "trunkuser",
    ]
    for bad in (
        Did("12", DidKind.EXTENSION, "1001"),
        Did("0108888x", DidKind.EXTENSION, "1001"),
        Did("01088880001", DidKind.EXTENSION, "1"),
    ):
        with pytest.raises(ValueError):
            check(bad)
    with pytest.raises(ValueError):
        check(Did("01088880001", "nowhere", "1001"))  # type: ignore[arg-type]


async def test_the_relay_follows_a_new_peer_and_relays_rtcp_beside_rtp() -> None:
    """A transfer's new SDP re-points the relay; RTCP crosses on RTP port + 1."""
    registry = CollectorRegistry()
    relay = RtpRelay(inside_host="127.0.0.1", outside_host="127.0.0.1", registry=registry)
    call = await relay.open()
    loop = asyncio.get_running_loop()
    try:
        inside_rtp, inside_rtcp = call.inside.rtp.address, call.inside.rtcp.address
        assert inside_rtp[1] % 2 == 0 and inside_rtcp[1] == inside_rtp[1] + 1
        received: dict[str, asyncio.Queue[bytes]] = {}

        class Peer(asyncio.DatagramProtocol):
            def __init__(self, name: str) -> None:
                received[name] = asyncio.Queue()
                self.name = name

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                received[self.name].put_nowait(data)

        async def peer(name: str, host: str) -> tuple[asyncio.DatagramTransport, int]:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: Peer(name), local_addr=(host, 0)
            )
            return transport, transport.get_extra_info("sockname")[1]

        carrier, carrier_port = await peer("carrier", CARRIER)
        carrier_rtcp, _ = await loop.create_datagram_endpoint(
            lambda: Peer("carrier_rtcp"), local_addr=(CARRIER, carrier_port + 1)
        )
        first, first_port = await peer("first", PHONES)
        second, second_port = await peer("second", PHONES)

        def sdp(host: str, port: int, codecs: str = "0") -> bytes:
            return (
                f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
                f"m=audio {port} RTP/AVP {codecs}\r\na=sendrecv\r\n"
            ).encode()

        shown = call.rewrite_outward(sdp(PHONES, first_port))  # towards the carrier
        call.rewrite_inward(sdp(CARRIER, carrier_port))
        carrier.sendto(b"to-first", call.outside.rtp.address)
        assert await asyncio.wait_for(received["first"].get(), 2) == b"to-first"
        first.sendto(b"from-first", inside_rtp)
        assert await asyncio.wait_for(received["carrier"].get(), 2) == b"from-first"
        carrier_rtcp.sendto(b"report", call.outside.rtcp.address)  # to the phone's RTP + 1
        for _ in range(50):
            if registry.get_sample_value("unicomm_rtcp_relayed_total"):
                break
            await asyncio.sleep(0.02)
        assert registry.get_sample_value("unicomm_rtcp_relayed_total") == 1
        assert call.inside.rtcp.peer == (PHONES, first_port + 1)

        # A transfer: the carrier's side now talks to the second phone.
        same_view = call.rewrite_outward(sdp(PHONES, second_port))
        assert same_view == shown  # the carrier sees nothing new: the same version
        again = call.rewrite_outward(sdp(PHONES, second_port, "8 0"))
        origin = re.compile(rb"o=unicomm (\d+) (\d+) ")
        before, after = origin.search(shown), origin.search(again)
        assert before and after and before[1] == after[1]  # one session for the carrier
        assert int(after[2]) == int(before[2]) + 1  # a new version: the SDP changed
        assert call.rewrite_outward(sdp(PHONES, second_port, "8 0")) == again
        carrier.sendto(b"to-second", call.outside.rtp.address)
        assert await asyncio.wait_for(received["second"].get(), 2) == b"to-second"
        first.sendto(b"stale", inside_rtp)  # the old phone is no longer relayed
        second.sendto(b"from-second", inside_rtp)
        assert await asyncio.wait_for(received["carrier"].get(), 2) == b"from-second"
        for transport in (carrier, carrier_rtcp, first, second):
            transport.close()
    finally:
        relay.close_all()


# -- with the exchange -----------------------------------------------------------------------


async def exchange(
    tmp_path: Path, carrier_port: int, *, workers: int = 0, public_host: str = ""
) -> Unicomm:
    """The exchange with a trunk to CARRIER:carrier_port (not registering) and its DIDs."""
    server = await start_unicomm(
        tmp_path / "server",
        extensions=("1001", "1002", "1003"),
        voip_trunk_host=CARRIER,
        voip_trunk_port=carrier_port,
        voip_trunk_domain="carrier.example",
        voip_trunk_username="trunkuser",
        voip_trunk_password="trunk-pw-1",
        voip_trunk_register=False,
        voip_media_workers=workers,
        voip_trunk_public_host=public_host,
    )
    pbx = server.http.app[PBX]
    await pbx.features.groups.save(
        RingGroup("600", "Service desk", Strategy.SIMULTANEOUS, ("1002", "1003"))
    )
    await pbx.dids.save(Did(DID_DESK, DidKind.EXTENSION, "1001", "Front desk"))
    await pbx.dids.save(Did(DID_GROUP, DidKind.RING_GROUP, "600"))
    await pbx.dids.save(Did(DID_MENU, DidKind.IVR, "700"))
    return server


RX = re.compile(r"RX \d+ bytes .*? from \w+ [^\n]*?:\n(.*?)\n--end msg--", re.DOTALL)


def phone_received(phone: Phone) -> str:
    """Every SIP message the pjsua2 phone received (from its log)."""
    return "\n".join(RX.findall(phone.log_path.read_text(errors="replace")))


async def two_way_audio(
    carrier_call: Call, phone_call: Call, tmp_path: Path, name: str, seconds: float = 2.0
) -> tuple[float, float]:
    """Each end plays its own tone: what the other heard, as frequencies."""
    carrier_tone = write_tone_wav(tmp_path / f"{name}-carrier.wav", 700.0, seconds + 4)
    phone_tone = write_tone_wav(tmp_path / f"{name}-phone.wav", 440.0, seconds + 4)
    at_carrier, at_phone = tmp_path / f"{name}-at-carrier.wav", tmp_path / f"{name}-at-phone.wav"
    await carrier_call.record(at_carrier)
    await phone_call.record(at_phone)
    await carrier_call.play(carrier_tone)
    await phone_call.play(phone_tone)
    await asyncio.sleep(seconds)
    await carrier_call.stop_record()
    await phone_call.stop_record()
    return (
        dominant_frequency(at_carrier, skip_seconds=0.3),
        dominant_frequency(at_phone, skip_seconds=0.3),
    )


async def records(server: Unicomm) -> list[CallRecord]:
    await server.voip.cdr.flush()
    async with server.ctx.db.session() as session:
        return list((await session.scalars(select(CallRecord).order_by(CallRecord.id))).all())


async def test_a_did_rings_its_extension_with_media_through_the_relay(tmp_path: Path) -> None:
    async with Phone.start(CALLER, log_dir=tmp_path, host=CARRIER) as carrier:
        server = await exchange(tmp_path, carrier.sip_port)
        try:
            port = server.sip_port
            relay = server.http.app[PBX].relay
            assert relay is not None
            async with Phone.start("alice", log_dir=tmp_path, host=PHONES) as alice:
                await alice.register("127.0.0.1", port, "1001", PASSWORD)
                call = await carrier.call(f"sip:{DID_DESK}@127.0.0.1:{port}")
                ringing = await alice.wait_incoming()
                assert ringing.incoming is not None
                invite = ringing.incoming["message"]
                assert f"sip:{CALLER}@" in invite.split("From:", 1)[1].split("\n", 1)[0]
                assert "c=IN IP4 127.0.0.1" in invite  # the relay's inside, not the carrier
                await ringing.answer()
                await call.wait_state("CONFIRMED")
                await call.wait_media()
                await ringing.wait_media()
                heard_by_carrier, heard_by_phone = await two_way_audio(
                    call, ringing, tmp_path, "desk"
                )
                # RTCP crosses too (pjsua2 reports every few seconds on RTP port + 1).
                relayed = next(iter(relay.calls))
                for _ in range(100):
                    if relayed.inside.rtcp.received and relayed.outside.rtcp.received:
                        break
                    await asyncio.sleep(0.1)
                assert relayed.inside.rtcp.received and relayed.outside.rtcp.received
                await call.hangup()
                await ringing.wait_state("DISCONNECTED")
                await asyncio.sleep(RECORDER_FINALISE_SECONDS)
                at_phone = phone_received(alice)
            at_carrier = phone_received(carrier)
        finally:
            await server.stop()
    assert abs(heard_by_carrier - 440) < 15  # the phone's tone reached the carrier
    assert abs(heard_by_phone - 700) < 15  # and the carrier's the phone
    assert "SIP/2.0 200 OK" in at_carrier and "m=audio" in at_carrier
    assert PHONES not in at_carrier  # no phone address in any header or SDP
    assert CARRIER not in at_phone  # nor the carrier's at the phone
    assert not relay.calls  # the call's relay ports are closed
    rows = await records(server)
    assert [(r.caller, r.callee, r.direction, r.disposition) for r in rows] == [
        (CALLER, "1001", "inbound", Disposition.ANSWERED)
    ]


async def test_a_did_rings_a_ring_group(tmp_path: Path) -> None:
    """Behind NAT (a public host): the carrier sees that host and its DID, nothing inside."""
    carrier_port = free_sip_port()
    server = await exchange(tmp_path, carrier_port, public_host=PUBLIC)
    try:
        port = server.sip_port
        tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 8.0)
        heard = tmp_path / "heard.wav"
        async with (
            Phone.start("bob", log_dir=tmp_path, host=PHONES) as bob,
            Phone.start("carol", log_dir=tmp_path, host=PHONES) as carol,
        ):
            await bob.register("127.0.0.1", port, "1002", PASSWORD)
            await carol.register("127.0.0.1", port, "1003", PASSWORD)
            async with Sipp.start(
                "uac_call",
                f"127.0.0.1:{port}",
                users=[(CALLER, "carrier-has-no-password")],
                service=DID_GROUP,
                domain="carrier.example",
                local_port=carrier_port,
                duration_ms=3000,
                extra_args=["-i", CARRIER, "-mi", CARRIER, "-rtp_echo"],
                work_dir=tmp_path / "carrier",
            ) as sipp:
                at_bob = await bob.wait_incoming()
                at_carol = await carol.wait_incoming()  # simultaneous: both ring
                await at_bob.answer()
                await at_bob.wait_state("CONFIRMED")
                await at_bob.wait_media()
                await at_bob.record(heard)
                await at_bob.play(tone)  # the SIPp carrier echoes it through the relay
                await at_carol.wait_state("DISCONNECTED")  # cancelled: bob has it
                result = await sipp.wait(20)
            await at_bob.wait_state("DISCONNECTED")
            await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    finally:
        await server.stop()
    assert result.ok, result.describe()
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440) < 15
    assert_hidden(result, PUBLIC)
    # Our 180 and 200 name the public address and the DID called: not the group (600), not
    # the member who answered (1002), as our later in-dialog requests would.
    answers = [m for m in result.received_messages if m.startswith(("SIP/2.0 180", "SIP/2.0 200"))]
    contacts = {header(m, "Contact") for m in answers if "INVITE" in header(m, "CSeq")}
    assert contacts == {f"<sip:{DID_GROUP}@{PUBLIC}:{server.sip_port}>"}, result.describe()
    everything = "\n".join(result.received_messages)
    assert "127.0.0.1" not in everything, result.describe()
    for inside in ("600", "1002", "1003"):
        assert f"sip:{inside}@" not in everything, result.describe()
    rows = await records(server)
    assert [(r.caller, r.callee, r.direction, r.disposition) for r in rows] == [
        (CALLER, "600", "inbound", Disposition.ANSWERED)  # a group's call is the group's
    ]


def assert_hidden(result: SippResult, relay_host: str = "127.0.0.1") -> None:
    everything = "\n".join(result.received_messages)
    assert "m=audio" in everything, result.describe()
    assert PHONES not in everything, result.describe()
    assert f"c=IN IP4 {relay_host}" in everything


def header(message: str, name: str) -> str:
    """The value of ``name`` in ``message`` ("" when it has none)."""
    for line in message.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


async def test_a_did_reaches_the_ivr_and_a_digit_sends_the_carrier_on(tmp_path: Path) -> None:
    async with Phone.start(CALLER, log_dir=tmp_path, host=CARRIER) as carrier:
        server = await exchange(tmp_path, carrier.sip_port, workers=1)
        try:
            port = server.sip_port
            pbx = server.http.app[PBX]
            await pbx.features.ivr.save(MENU)
            await pbx.features.ivr.phrase(MENU, "greeting")  # spoken now, as the console does
            async with Phone.start("bob", log_dir=tmp_path, host=PHONES) as bob:
                await bob.register("127.0.0.1", port, "1002", PASSWORD)
                call = await carrier.call(f"sip:{DID_MENU}@127.0.0.1:{port}")
                await call.wait_state("CONFIRMED")  # the attendant answered
                await call.wait_media()
                await asyncio.sleep(0.8)  # into the greeting
                await call.send_dtmf("1")  # RFC 4733, through the relay to the worker
                at_bob = await bob.wait_incoming(timeout=10)
                await at_bob.answer()
                await at_bob.wait_state("CONFIRMED")
                await at_bob.wait_media()
                # The relay now joins the carrier to bob: two-way audio.
                heard_by_carrier, heard_by_phone = await two_way_audio(
                    call, at_bob, tmp_path, "ivr"
                )
                await call.hangup()
                await at_bob.wait_state("DISCONNECTED")
                await asyncio.sleep(RECORDER_FINALISE_SECONDS)
                at_phone = phone_received(bob)
            at_carrier = phone_received(carrier)
            pool = pbx.pool
            assert pool is not None
            for _ in range(50):  # the transfer freed the worker's slot
                if not any(w.sessions for w in pool.workers):
                    break
                await asyncio.sleep(0.1)
            assert not any(w.sessions for w in pool.workers)
        finally:
            await server.stop()
    assert abs(heard_by_carrier - 440) < 15
    assert abs(heard_by_phone - 700) < 15
    assert PHONES not in at_carrier
    assert CARRIER not in at_phone
    rows = await records(server)
    assert [(r.caller, r.callee, r.direction) for r in rows] == [(CALLER, "1002", "inbound")]


async def test_an_unknown_did_is_404(tmp_path: Path) -> None:
    carrier_port = free_sip_port()
    server = await exchange(tmp_path, carrier_port)
    try:
        result = await run_sipp(
            "uac_expect_status",
            f"127.0.0.1:{server.sip_port}",
            users=[(CALLER, "carrier-has-no-password")],
            service="01099990000",
            domain="carrier.example",
            local_port=carrier_port,
            extra_args=["-i", CARRIER, "-mi", CARRIER],
            work_dir=tmp_path / "carrier",
            timeout=20,
        )
    finally:
        await server.stop()
    assert result.final_statuses == [404], result.describe()
    assert not any(m.startswith("SIP/2.0 407") for m in result.received_messages)
    rows = await records(server)  # a call from outside, refused: inbound, not internal
    assert [(r.caller, r.callee, r.direction, r.disposition, r.sip_status) for r in rows] == [
        (CALLER, "01099990000", "inbound", Disposition.NOT_FOUND, 404)
    ]


@pytest.mark.parametrize(
    "source", ["another port", "another address"], ids=["same-host", "other-host"]
)
async def test_an_invite_claiming_to_be_the_carrier_from_elsewhere_is_challenged(
    tmp_path: Path, source: str
) -> None:
    carrier_port = free_sip_port()
    server = await exchange(tmp_path, carrier_port)
    host, local_port = (
        (CARRIER, free_sip_port())
        if source == "another port"
        else (
            STRANGER,
            carrier_port,
        )
    )
    try:
        async with Phone.start("alice", log_dir=tmp_path, host=PHONES) as alice:
            await alice.register("127.0.0.1", server.sip_port, "1001", PASSWORD)
            result = await run_sipp(
                "uac_expect_status",
                f"127.0.0.1:{server.sip_port}",
                users=[(CALLER, "a-guess")],
                service=DID_DESK,
                domain="carrier.example",
                local_port=local_port,
                extra_args=["-i", host, "-mi", host],
                work_dir=tmp_path / "forger",
                timeout=20,
            )
            await asyncio.sleep(0.3)
            assert alice.events.find(lambda e: e.get("event") == "incoming") is None
    finally:
        await server.stop()
    received = result.received_messages
    assert any(m.startswith("SIP/2.0 407") for m in received), result.describe()
    assert result.final_statuses == [403], result.describe()  # its guess was wrong
    # Not a call from the carrier: a request that failed authentication, like a phone's
    # wrong password. No call record (a scanner would fill the table), inbound or internal.
    assert await records(server) == []


# -- the DID table in the API, the console and the command line ----------------------------------


async def sign_in(
    client: TestClient, ctx: AppContext, name: str, role: Role, csrf: str = ""
) -> str:
    """Sign in as a new user (``csrf``: the token of a session already open)."""
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, "correct-horse", role)
    response = await client.post(
        "/api/auth/login",
        json={"username": name, "password": "correct-horse"},
        headers={"X-CSRF-Token": csrf} if csrf else {},
    )
    assert response.status == 200, await response.text()
    token: str = (await response.json())["csrf_token"]
    return token


async def add_extension(ctx: AppContext, number: str) -> None:
    async with ctx.db.session() as session:
        await service.add_extension(
            session, number=number, name=f"Phone {number}", password="sip-password-1",
            realm=ctx.settings.sip_realm, department_code=None,
        )  # fmt: skip


async def test_dids_are_managed_by_api_with_roles_checks_and_audit(
    client: TestClient, app_context: AppContext
) -> None:
    await add_extension(app_context, "2001")
    clerk = await sign_in(client, app_context, "clerk", Role.STAFF)
    body = {"kind": "extension", "target": "2001", "name": "总机 Front desk"}
    path = "/api/voip/trunk/dids/010-8888-0001"
    refused = await client.put(path, json=body, headers={"X-CSRF-Token": clerk})
    assert refused.status == 403
    trunk = await (await client.get("/api/voip/trunk")).json()
    assert trunk["configured"] is False and trunk["registered"] is False
    assert "password" not in trunk
    admin = await sign_in(client, app_context, "admin", Role.ADMIN, clerk)
    headers = {"X-CSRF-Token": admin}
    saved = await client.put(path, json=body, headers=headers)
    assert saved.status == 200, await saved.text()
    assert (await saved.json())["did"] == "01088880001"  # stored normalised
    for bad, field in (
        ({"kind": "ring_group", "target": "600"}, "target"),  # no such group
        ({"kind": "ivr", "target": "700"}, "target"),
        ({"kind": "extension", "target": "2999"}, "target"),
        ({"kind": "elsewhere", "target": "2001"}, None),
    ):
        answer = await client.put(path, json=bad, headers=headers)
        assert answer.status == 422, (bad, await answer.text())
        if field:
            assert (await answer.json())["detail"][0]["field"] == field
    listed = await (await client.get("/api/voip/trunk/dids")).json()
    assert listed == [
        {"did": "01088880001", "kind": "extension", "target": "2001", "name": "总机 Front desk"}
    ]
    assert (await client.delete(path, headers=headers)).status == 200
    assert (await client.delete(path, headers=headers)).status == 404
    async with app_context.db.session() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("voip.trunk_did.%"))
            )
        ).all()
    assert sorted(actions) == ["voip.trunk_did.remove", "voip.trunk_did.save"]


@pytest.mark.parametrize(
    ("lang", "title", "kind"), [("zh", "中继线路", "分机"), ("en", "Carrier trunk", "extension")]
)
async def test_the_console_page_lists_adds_refuses_and_removes_dids(
    client: TestClient, app_context: AppContext, lang: str, title: str, kind: str
) -> None:
    await add_extension(app_context, "2001")
    csrf = await sign_in(client, app_context, "ops", Role.OPERATOR)
    language = {"Accept-Language": lang}
    page = await client.get("/console/voip/trunk", headers=language)
    assert page.status == 200
    text = await page.text()
    assert title in text and 'id="trunk-dids-none"' in text
    form = {"csrf_token": csrf, "did": "01088880001", "kind": "extension", "target": "2001"}
    added = await client.post(
        "/console/voip/trunk/dids", data=form, headers=language, allow_redirects=False
    )
    assert added.status == 303
    assert added.headers["Location"].endswith("?saved=01088880001")
    listed = await (await client.get("/console/voip/trunk", headers=language)).text()
    assert 'data-did="01088880001"' in listed and kind in listed
    wrong = await client.post(
        "/console/voip/trunk/dids", data={**form, "target": "2999"}, headers=language
    )
    assert wrong.status == 422
    assert "2999" in await wrong.text()
    removed = await client.post(
        "/console/voip/trunk/dids/01088880001/remove",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )
    assert removed.status == 303
    assert "data-did=" not in await (await client.get("/console/voip/trunk")).text()


def test_the_command_line_sets_lists_and_removes_dids(tmp_path: Path) -> None:
    config = tmp_path / "unicomm.toml"
    config.write_text('[unicomm]\ndata_dir = "var"\n')
    base = ("--config", str(config))
    assert run_cli(*base, "db", "upgrade", cwd=tmp_path).returncode == 0
    added = run_cli(
        *base, "ext", "add", "2001", "--name", "王芳", "--password", "s3cret-pass", cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    assert "no DID" in run_cli(*base, "trunk", "did", "list", cwd=tmp_path).stdout
    set_ = run_cli(
        *base, "trunk", "did", "set", "+86 10 8888 0001", "extension", "2001",
        "--name", "总机", cwd=tmp_path,
    )  # fmt: skip
    assert set_.returncode == 0, set_.stderr
    assert "+861088880001 -> extension 2001" in set_.stdout
    missing = run_cli(*base, "trunk", "did", "set", "01088880002", "ivr", "700", cwd=tmp_path)
    assert missing.returncode != 0 and "no ivr 700" in missing.stderr
    listed = run_cli(*base, "trunk", "did", "list", cwd=tmp_path).stdout
    assert "+861088880001\textension\t2001\t总机" in listed
    removed = run_cli(*base, "trunk", "did", "remove", "+861088880001", cwd=tmp_path)
    assert removed.returncode == 0 and "removed DID +861088880001" in removed.stdout
    assert "no DID" in run_cli(*base, "trunk", "did", "list", cwd=tmp_path).stdout
