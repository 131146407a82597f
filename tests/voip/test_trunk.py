"""The carrier trunk against a SIPp carrier on its own loopback address (127.0.0.2).

Phones live on 127.0.0.3 and the exchange on 127.0.0.1, so anything of the phones'
(address, Contact, SDP) that reached the carrier would show. Calls from the carrier
(DIDs) are in test_trunk_inbound.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from support.phones import RECORDER_FINALISE_SECONDS, Phone
from support.sipp import Sipp, SippResult, run_sipp, sipp_binary
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from core.models import Department
from media.audio import dominant_frequency, write_tone_wav
from voip import PBX
from voip.models import CallRecord, ClassOfService, DepartmentPolicy, Disposition, Extension
from voip.sip.digest import compute_ha1, compute_response, parse_credentials

CARRIER = "127.0.0.2"
PHONES = "127.0.0.3"
CALLER_ID = "01088880000"
LONG_DISTANCE = "002112345678"  # 0 for an outside line, then a Shanghai number


@pytest.fixture(params=["carrier"])
async def carrier(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Sipp]:
    """The SIPp carrier: ``carrier`` answers INVITEs at once, ``carrier_auth`` with 407."""
    sipp = Sipp(
        request.param,
        users=[("trunkuser", "trunk-pw-1")],
        calls=10,
        work_dir=tmp_path / "carrier",
        extra_args=["-i", CARRIER, "-mi", CARRIER, "-rtp_echo"],
    )
    # Sipp.spawn() probes 127.0.0.1 for a listening UAS; this one listens on CARRIER.
    sipp.process = await asyncio.create_subprocess_exec(
        sipp_binary(),
        *sipp.arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=(sipp.work_dir / "stdout.log").open("wb"),
        stderr=asyncio.subprocess.STDOUT,
        cwd=sipp.work_dir,
    )
    await asyncio.sleep(0.3)
    try:
        yield sipp
    finally:
        await sipp.kill()


@pytest.fixture
async def unicomm(tmp_path: Path, carrier: Sipp) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(
        tmp_path / "server",
        extensions=("1001", "1002"),
        voip_trunk_host=CARRIER,
        voip_trunk_port=carrier.port,
        voip_trunk_domain="carrier.example",
        voip_trunk_username="trunkuser",
        voip_trunk_password="trunk-pw-1",
    )
    async with server.ctx.db.session() as session:
        department = await session.scalar(select(Department).where(Department.code == "IT"))
        assert department is not None
        session.add(DepartmentPolicy(department_id=department.id, caller_id=CALLER_ID))
        await session.execute(
            update(Extension)
            .where(Extension.number == "1002")
            .values(class_of_service=ClassOfService.NATIONAL)
        )
    await server.voip.accounts.reload()
    pbx = server.http.app[PBX]
    await pbx.plan.reload()
    assert pbx.trunk is not None
    for _ in range(50):
        if pbx.trunk.registered:
            break
        await asyncio.sleep(0.1)
    yield server
    await server.stop()


async def carrier_saw(carrier: Sipp) -> SippResult:
    await asyncio.sleep(0.2)
    await carrier.kill()
    return carrier.result(0)


async def test_trunk_registers_with_digest_auth(unicomm: Unicomm, carrier: Sipp) -> None:
    trunk = unicomm.http.app[PBX].trunk
    assert trunk is not None and trunk.registered and trunk.last_status == 200
    result = await carrier_saw(carrier)
    registers = [m for m in result.received_messages if m.startswith("REGISTER")]
    assert len(registers) >= 2 and "Authorization: Digest" in registers[1]
    assert 'username="trunkuser"' in registers[1]


async def test_class_of_service_and_a_hidden_topology_on_the_trunk(
    unicomm: Unicomm, carrier: Sipp, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 4.0)
    heard = tmp_path / "heard.wav"
    async with (
        Phone.start("alice", log_dir=tmp_path, host=PHONES) as alice,
        Phone.start("bob", log_dir=tmp_path, host=PHONES) as bob,
    ):
        await alice.register("127.0.0.1", port, "1001", PASSWORD)  # internal only
        await bob.register("127.0.0.1", port, "1002", PASSWORD)  # national
        refused = await alice.call(f"sip:{LONG_DISTANCE}@127.0.0.1:{port}")
        ended = await alice.events.wait(
            lambda e: (
                e.get("event") == "call_state"
                and e.get("call") == refused.id
                and e["state"] == "DISCONNECTED"
            ),
            5,
            "the internal-only call to be refused",
            refused.since,
        )
        assert ended["code"] == 403
        call = await bob.call(f"sip:{LONG_DISTANCE}@127.0.0.1:{port}")
        await call.wait_state("CONFIRMED")
        await call.wait_media()
        await call.record(heard)
        await call.play(tone)  # the carrier echoes RTP: the tone comes back through the relay
        await asyncio.sleep(1.5)
        await call.stop_record()
        await call.hangup()
        await call.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440) < 15
    result = await carrier_saw(carrier)
    invites = [m for m in result.received_messages if m.startswith("INVITE")]
    assert len(invites) == 1, result.describe()  # the refused call never left the exchange
    invite = invites[0]
    assert invite.startswith("INVITE sip:02112345678@carrier.example")
    assert f"sip:{CALLER_ID}@" in invite.split("From:", 1)[1].split("\n", 1)[0]
    everything = "\n".join(result.received_messages)
    assert PHONES not in everything  # no phone address in any header or SDP
    assert "sip:1002@" not in everything and "sip:bob@" not in everything
    assert "c=IN IP4 127.0.0.1" in invite  # the relay's address instead
    await unicomm.voip.cdr.flush()
    async with unicomm.ctx.db.session() as session:
        rows = (await session.scalars(select(CallRecord).order_by(CallRecord.id))).all()
    assert [(r.caller, r.direction, r.disposition, r.sip_status) for r in rows] == [
        ("1001", "outbound", Disposition.REJECTED, 403),  # an outbound attempt, refused
        ("1002", "outbound", Disposition.ANSWERED, 200),
    ]
    assert rows[1].callee == "02112345678"


def digest_is_right(invite: str, user: str, password: str, realm: str) -> bool:
    """The INVITE's Proxy-Authorization answers its challenge for ``user``/``password``."""
    line = next(li for li in invite.splitlines() if li.startswith("Proxy-Authorization:"))
    credentials = parse_credentials(line.split(":", 1)[1].strip())
    ha1 = compute_ha1(user, realm, password, credentials.algorithm)
    expected = compute_response(
        ha1,
        algorithm=credentials.algorithm,
        method="INVITE",
        uri=credentials.uri,
        nonce=credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    request_uri = invite.split(" ", 2)[1]
    return (
        credentials.username == user
        and credentials.realm == realm
        and credentials.uri == request_uri
        and credentials.response == expected
    )


def private_addresses(result: SippResult) -> str:
    """Every message the carrier received, to look for the phones' address in."""
    return "\n".join(result.received_messages)


@pytest.mark.parametrize("carrier", ["carrier_auth"], indirect=True)
async def test_a_carrier_that_challenges_invites_gets_the_trunk_credentials(
    unicomm: Unicomm, carrier: Sipp, tmp_path: Path
) -> None:
    port = unicomm.sip_port
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 4.0)
    heard = tmp_path / "heard.wav"
    async with Phone.start("bob", log_dir=tmp_path, host=PHONES) as bob:
        await bob.register("127.0.0.1", port, "1002", PASSWORD)
        call = await bob.call(f"sip:{LONG_DISTANCE}@127.0.0.1:{port}")
        await call.wait_state("CONFIRMED")
        await call.wait_media()
        await call.record(heard)
        await call.play(tone)  # echoed by the carrier through the relay
        await asyncio.sleep(1.5)
        await call.stop_record()
        await call.hangup()
        await call.wait_state("DISCONNECTED")
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
    assert abs(dominant_frequency(heard, skip_seconds=0.3) - 440) < 15
    result = await carrier_saw(carrier)
    invites = [m for m in result.received_messages if m.startswith("INVITE")]
    assert len(invites) == 2, result.describe()
    first, second = invites
    assert "Proxy-Authorization" not in first
    assert digest_is_right(second, "trunkuser", "trunk-pw-1", "carrier.example")
    call_ids = [m.split("Call-ID:", 1)[1].split("\n", 1)[0].strip() for m in invites]
    assert call_ids[0] == call_ids[1]  # the same call, asked again (RFC 3261 §22.2)
    assert "CSeq: 1 INVITE" in first and "CSeq: 2 INVITE" in second
    for invite in invites:
        assert f"sip:{CALLER_ID}@" in invite.split("From:", 1)[1].split("\n", 1)[0]
    acks = [m for m in result.received_messages if m.startswith("ACK")]
    assert any("CSeq: 2 ACK" in ack for ack in acks), result.describe()  # the 2xx's ACK
    assert PHONES not in private_addresses(result)
    await unicomm.voip.cdr.flush()
    async with unicomm.ctx.db.session() as session:
        rows = (await session.scalars(select(CallRecord))).all()
    assert [(r.direction, r.disposition, r.sip_status) for r in rows] == [
        ("outbound", Disposition.ANSWERED, 200)
    ]


@pytest.mark.parametrize("carrier", ["carrier_auth"], indirect=True)
async def test_credentials_the_carrier_refuses_end_in_503_not_a_challenge(
    tmp_path: Path, carrier: Sipp
) -> None:
    server = await start_unicomm(
        tmp_path / "server",
        extensions=("1001",),
        voip_trunk_host=CARRIER,
        voip_trunk_port=carrier.port,
        voip_trunk_domain="carrier.example",
        voip_trunk_username="intruder",  # the carrier knows trunkuser only
        voip_trunk_password="not-the-password",
        voip_trunk_register=False,
    )
    try:
        await server.voip.accounts.reload()
        async with server.ctx.db.session() as session:
            await session.execute(
                update(Extension)
                .where(Extension.number == "1001")
                .values(class_of_service=ClassOfService.NATIONAL)
            )
        await server.voip.accounts.reload()
        result = await run_sipp(
            "uac_expect_status",
            f"127.0.0.1:{server.sip_port}",
            users=[("1001", PASSWORD)],
            service=LONG_DISTANCE,
            extra_args=["-i", PHONES, "-mi", PHONES],
            timeout=20,
        )
        assert result.final_statuses == [503], result.describe()
        seen = await carrier_saw(carrier)
        assert len([m for m in seen.received_messages if m.startswith("INVITE")]) == 2
    finally:
        await server.stop()


async def test_a_late_offer_answer_in_the_ack_names_the_relay(
    unicomm: Unicomm, carrier: Sipp, tmp_path: Path
) -> None:
    """The phone's INVITE has no SDP: its answer comes in the ACK and is anchored too."""
    result = await run_sipp(
        "uac_late_offer",
        f"127.0.0.1:{unicomm.sip_port}",
        users=[("1002", PASSWORD)],
        service=LONG_DISTANCE,
        duration_ms=500,
        extra_args=["-i", PHONES, "-mi", PHONES],
        work_dir=tmp_path / "phone",
        timeout=20,
    )
    assert result.ok, result.describe()
    phone_ack = [m for m in result.sent_messages if m.startswith("ACK")][-1]
    assert f"c=IN IP4 {PHONES}" in phone_ack  # the phone did name its own address
    seen = await carrier_saw(carrier)
    invite = next(m for m in seen.received_messages if m.startswith("INVITE"))
    assert "m=audio" not in invite  # no offer: the carrier makes one in its 200
    acks = [m for m in seen.received_messages if m.startswith("ACK")]
    assert len(acks) == 1, seen.describe()
    ack = acks[0]
    assert "Content-Type: application/sdp" in ack
    assert "c=IN IP4 127.0.0.1" in ack and "m=audio " in ack  # the relay's outside
    assert PHONES not in private_addresses(seen)


async def test_behind_nat_the_carrier_sees_only_the_public_address(
    tmp_path: Path, carrier: Sipp
) -> None:
    """voip_trunk_public_host: Via, Contact and SDP towards the carrier all name it."""
    public = "127.0.0.5"  # the exchange's address as the carrier sees it (its NAT's)
    server = await start_unicomm(
        tmp_path / "server",
        extensions=("1002",),
        voip_trunk_host=CARRIER,
        voip_trunk_port=carrier.port,
        voip_trunk_domain="carrier.example",
        voip_trunk_username="trunkuser",
        voip_trunk_password="trunk-pw-1",
        voip_trunk_public_host=public,
    )
    try:
        async with server.ctx.db.session() as session:
            await session.execute(
                update(Extension)
                .where(Extension.number == "1002")
                .values(class_of_service=ClassOfService.NATIONAL)
            )
        await server.voip.accounts.reload()
        trunk = server.http.app[PBX].trunk
        assert trunk is not None
        for _ in range(50):
            if trunk.registered:
                break
            await asyncio.sleep(0.1)
        result = await run_sipp(
            "uac_call",
            f"127.0.0.1:{server.sip_port}",
            users=[("1002", PASSWORD)],
            service=LONG_DISTANCE,
            duration_ms=500,
            extra_args=["-i", PHONES, "-mi", PHONES],
            work_dir=tmp_path / "phone",
            timeout=20,
        )
        assert result.ok, result.describe()
        seen = await carrier_saw(carrier)
    finally:
        await server.stop()
    invite = next(m for m in seen.received_messages if m.startswith("INVITE"))
    assert f"Via: SIP/2.0/UDP {public}:" in invite
    contact = invite.split("Contact:", 1)[1].split("\n", 1)[0]
    # The trunk's caller ID (no department's here: the trunk user), not the extension.
    assert f"<sip:trunkuser@{public}:" in contact and "1002" not in contact
    assert f"c=IN IP4 {public}" in invite
    everything = private_addresses(seen)
    assert "BYE " in everything  # the whole call, its end included
    assert "127.0.0.1" not in everything and PHONES not in everything
