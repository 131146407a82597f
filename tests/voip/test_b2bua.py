"""Calls through the exchange between SIPp phones: answer, cancel, busy, 404, 480, CDR."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.sipclient import SipClient
from support.sipp import Sipp, SippResult, run_sipp
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from voip.models import CallRecord, Disposition


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path, sip_ring_timeout=3.0)
    yield server
    await server.stop()


def target(server: Unicomm) -> str:
    return f"127.0.0.1:{server.sip_port}"


# Each SIPp run keeps its trace in its own folder under the test's tmp_path.
_runs = itertools.count()


async def sipp_as(
    name: str, server: Unicomm, user: str, folder: Path, **options: object
) -> SippResult:
    """Run a client scenario as extension ``user`` against the exchange."""
    return await run_sipp(
        name,
        target(server),
        users=[(user, PASSWORD)],
        keys={"domain": "unicomm"},
        work_dir=folder / f"sipp-{name}-{user}-{next(_runs)}",
        **options,  # type: ignore[arg-type]
    )


async def register_sipp(server: Unicomm, number: str, port: int, folder: Path) -> None:
    """Register ``number`` from the port a SIPp UAS will listen on afterwards."""
    result = await sipp_as("register_auth", server, number, folder, local_port=port, timeout=15)
    assert result.ok, result.describe()


async def records(server: Unicomm, count: int = 1) -> list[CallRecord]:
    for _ in range(50):
        await server.voip.cdr.flush()
        async with server.ctx.db.session() as session:
            rows = (await session.scalars(select(CallRecord).order_by(CallRecord.id))).all()
        if len(rows) >= count:
            return list(rows)
        await asyncio.sleep(0.1)
    return list(rows)


async def test_call_answer_bye_writes_one_record(unicomm: Unicomm, tmp_path: Path) -> None:
    callee = Sipp("uas_answer", service="1002")
    await register_sipp(unicomm, "1002", callee.port, tmp_path)
    await callee.spawn()
    try:
        caller = await sipp_as(
            "uac_call", unicomm, "1001", tmp_path, service="1002", duration_ms=500, timeout=20
        )
        assert caller.ok, caller.describe()
        answered = await callee.wait(10)
        assert answered.ok, answered.describe()
        # The SDP went through unchanged: the callee saw the caller's o= line.
        invite = next(m for m in answered.received_messages if m.startswith("INVITE"))
        assert "o=sipp" in invite and "Max-Forwards: 69" in invite
    finally:
        await callee.kill()
    [record] = await records(unicomm)
    assert (record.caller, record.callee) == ("1001", "1002")
    assert record.disposition is Disposition.ANSWERED and record.sip_status == 200
    assert record.hangup_side == "caller" and record.answered_at is not None
    assert record.caller_department_id is not None
    await unicomm.voip.live.drain()
    assert await unicomm.ctx.state.hgetall("voip:calls") == {}


async def test_busy_callee_passes_486_through(unicomm: Unicomm, tmp_path: Path) -> None:
    callee = Sipp("uas_busy", service="1002")
    await register_sipp(unicomm, "1002", callee.port, tmp_path)
    async with Sipp.start("uas_busy", service="1002", local_port=callee.port):
        result = await sipp_as(
            "uac_expect_status", unicomm, "1001", tmp_path, service="1002", timeout=20
        )
    assert result.final_statuses == [486], result.describe()
    [record] = await records(unicomm)
    assert record.disposition is Disposition.BUSY and record.sip_status == 486


async def test_unknown_and_unregistered_numbers(unicomm: Unicomm, tmp_path: Path) -> None:
    for number, status in (("7777", 404), ("1003", 480)):
        result = await sipp_as(
            "uac_expect_status", unicomm, "1001", tmp_path, service=number, timeout=20
        )
        assert result.final_statuses == [status], result.describe()
    rows = await records(unicomm, 2)
    assert [r.disposition for r in rows] == [Disposition.NOT_FOUND, Disposition.UNAVAILABLE]


async def test_cancel_before_answer(unicomm: Unicomm, tmp_path: Path) -> None:
    # The callee only rings (a scripted phone): the caller gives up after the 180.

    phone = await SipClient.connect(unicomm.sip_port)
    assert (await phone.register("1002", PASSWORD)).status == 200

    async def ring_only() -> None:
        invite = await phone.receive(10)
        phone.send(invite.response(180, to_tag="ringing1"))  # type: ignore[union-attr]
        cancel = await phone.receive(10)
        assert getattr(cancel, "method", "") == "CANCEL"
        phone.send(cancel.response(200))  # type: ignore[union-attr]
        phone.send(invite.response(487, to_tag="ringing1"))  # type: ignore[union-attr]
        ack = await phone.receive(10)
        assert getattr(ack, "method", "") == "ACK"

    ringing = asyncio.create_task(ring_only())
    result = await sipp_as("uac_cancel", unicomm, "1001", tmp_path, service="1002", timeout=20)
    assert result.ok, result.describe()
    await asyncio.wait_for(ringing, 10)
    [record] = await records(unicomm)
    assert record.disposition is Disposition.CANCELLED and record.hangup_side == "caller"
    await phone.close()


async def test_retransmissions_are_answered_from_the_transaction_layer(unicomm: Unicomm) -> None:
    for scenario in ("udp_retransmit", "udp_retransmit_register"):
        result = await run_sipp(
            scenario,
            target(unicomm),
            users=[("1001", PASSWORD)],
            keys={"domain": "unicomm", "ruri": f"sip:{target(unicomm)}"},
            timeout=20,
        )
        assert result.ok, result.describe()
        first, second = result.received_messages[:2]
        assert first == second
        if scenario == "udp_retransmit_register":
            # The registrar's own challenge, same nonce: the transaction answered it again.
            assert first.startswith("SIP/2.0 401") and "nonce=" in first


def reinvite_200s(result: SippResult) -> list[str]:
    """The 200s the caller got for its re-INVITE (CSeq 10)."""
    return [
        m
        for m in result.received_messages
        if m.startswith("SIP/2.0 200") and "CSeq: 10 INVITE" in m
    ]


async def test_reinvite_200_goes_again_until_its_ack(unicomm: Unicomm, tmp_path: Path) -> None:
    """§13.3.1.4/§14.2: the caller drops the first 200 of its re-INVITE and ACKs only the
    second; the callee sends its 200 twice, as if our ACK were lost, and is ACKed twice."""
    callee = Sipp("uas_reinvite_ack_again", service="1002", retransmissions=False)
    await register_sipp(unicomm, "1002", callee.port, tmp_path)
    await callee.spawn()
    try:
        caller = await sipp_as(
            "uac_reinvite_late_ack",
            unicomm,
            "1001",
            tmp_path,
            service="1002",
            duration_ms=1500,  # a third 200 (none after the ACK) would fail the call
            retransmissions=False,
            timeout=20,
        )
        assert caller.ok, caller.describe()
        answered = await callee.wait(10)
        assert answered.ok, answered.describe()
    finally:
        await callee.kill()
    first, again = reinvite_200s(caller)
    assert first == again  # the same 200, sent again by the exchange
    reinvite = [m for m in answered.received_messages if m.startswith("INVITE ")][1]
    cseq = reinvite.split("CSeq: ", 1)[1].split()[0]
    again = [
        m for m in answered.received_messages if m.startswith("ACK ") and f"CSeq: {cseq} ACK" in m
    ]
    assert len(again) == 2 and again[0] == again[1], answered.describe()  # the same ACK
    [record] = await records(unicomm)
    assert record.disposition is Disposition.ANSWERED and record.hangup_side == "caller"


# A LAN's timers for the test that waits 64*T1 for an ACK: 3.2 s instead of 32 s. T2 is
# 8*T1 as with the defaults (500 ms, 4 s), so the 200 goes as often, each gap scaled.
T1_MS, T2_MS = 50, 400

_TRACE_STAMP = re.compile(
    r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(?:UDP|TCP) message (received|sent) "
    r"[^\n]*\n\n",
    re.MULTILINE,
)


def received_at(result: SippResult) -> list[tuple[float, str]]:
    """(seconds on SIPp's clock, message) of every message ``result``'s SIPp received."""
    trace = result.messages
    heads = list(_TRACE_STAMP.finditer(trace))
    found = []
    for index, head in enumerate(heads):
        end = heads[index + 1].start() if index + 1 < len(heads) else len(trace)
        if head[2] == "received":
            stamp = dt.datetime.strptime(head[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            found.append((stamp, trace[head.end() : end]))
    return found


async def test_reinvite_200_never_acked_ends_the_call(tmp_path: Path) -> None:
    """No ACK for 64*T1 (with T1 set to 50 ms: 3.2 s): the 200 went T1, 2*T1 ... T2 apart,
    then BYE on both legs, 64*T1 after the first 200, as with the default T1 after 32 s."""
    unicomm = await start_unicomm(tmp_path, sip_ring_timeout=3.0, sip_t1_ms=T1_MS, sip_t2_ms=T2_MS)
    t1, t2 = T1_MS / 1000, T2_MS / 1000
    callee = Sipp("uas_reinvite_ack_again", service="1002", retransmissions=False)
    try:
        await register_sipp(unicomm, "1002", callee.port, tmp_path)
        await callee.spawn()
        try:
            started = asyncio.get_running_loop().time()
            caller = await sipp_as(
                "uac_reinvite_no_ack",
                unicomm,
                "1001",
                tmp_path,
                service="1002",
                retransmissions=False,
                timeout=30,
            )
            took = asyncio.get_running_loop().time() - started
            assert caller.ok, caller.describe()
            answered = await callee.wait(10)
            assert answered.ok, answered.describe()  # it got its BYE too
        finally:
            await callee.kill()
        # Sent at 0, then T1, 3*T1, 7*T1, 15*T1, then T2 apart up to 63*T1: 1 + 10, the same.
        sent = reinvite_200s(caller)
        assert len(sent) == 11 and len(set(sent)) == 1, caller.describe()
        assert caller.logs.count("reinvite-200") == 11
        at_caller = received_at(caller)
        times = [at for at, m in at_caller if m.startswith("SIP/2.0 200") and "CSeq: 10 " in m]
        first = times[0]
        due = [0.0, t1, 3 * t1, 7 * t1, *(7 * t1 + n * t2 for n in range(1, 8))]
        for at, expected in zip(times, due, strict=True):
            assert expected - 0.01 <= at - first < expected + 0.15, (times, due)
        # The BYE to the caller and the one to the callee: 64*T1 after that first 200.
        bye_to_caller = next(at for at, m in at_caller if m.startswith("BYE "))
        bye_to_callee = next(at for at, m in received_at(answered) if m.startswith("BYE "))
        for bye in (bye_to_caller, bye_to_callee):
            assert 64 * t1 - 0.01 <= bye - first < 64 * t1 + 0.5, (bye - first, 64 * t1)
        assert took < 15  # not the default T1's 32 s
        [record] = await records(unicomm)
        assert record.disposition is Disposition.ANSWERED and record.hangup_side == "system"
        assert record.sip_status == 408 and record.ended_at is not None
        await unicomm.voip.live.drain()
        assert await unicomm.ctx.state.hgetall("voip:calls") == {}
    finally:
        await unicomm.stop()
