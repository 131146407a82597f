"""voip.place_call: the exchange rings a number and a media worker reads a text to it.

Real pieces only: the server with one pjsua2 media worker, pjsua2 phones registered
as extensions. The phone that answers records what it hears: espeak-ng speech,
well above silence, for seconds. With CollectDigits the phone presses keys (RFC 4733
telephone-events, pjsua2's default): an accepted key stops the reading, is handed to
the caller, and is answered ("Confirmed.") before the hang-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.phones import RECORDER_FINALISE_SECONDS, Call, Phone
from support.sipp import Sipp, sipp_binary
from support.sipserver import PASSWORD, Unicomm, start_unicomm

from media.audio import read_wav, rms_dbfs
from voip import PBX, CallOutcome, CallResult, CollectDigits, place_call
from voip.dialplan import Destination, DialPlan, ToPstn
from voip.models import CallRecord, ClassOfService, Disposition
from voip.outbound_calls import classify, dialled_number

TEXT = "This is a test alert from the duty office. Please reply OK."
PRESS = "This is a test alert from the duty office. Press 1 to confirm you received this alert."


def test_numbers_are_dialled_by_the_plan() -> None:
    plan = DialPlan.default()
    assert dialled_number("1001", plan) == "1001"
    assert dialled_number("+8613800138000", plan) == "013800138000"  # a mobile: national
    assert dialled_number("+86 10 6512 3456", plan) == "001065123456"  # Beijing landline
    assert dialled_number("+442071234567", plan) == "000442071234567"  # international
    assert dialled_number("0013800138000", plan) == "0013800138000"  # a dial string as is
    for bad in ("", "abc", "+0123", "sip:1001@x", "1" * 40):
        assert dialled_number(bad, plan) is None
    decision = plan.decide("013800138000", ClassOfService.NATIONAL)
    assert isinstance(decision, ToPstn) and decision.destination is Destination.NATIONAL


def test_unanswered_outcomes() -> None:
    assert classify(486, True)[0] is CallResult.BUSY
    assert classify(603, False)[0] is CallResult.BUSY
    assert classify(480, True)[0] is CallResult.NO_ANSWER
    assert classify(487, True)[0] is CallResult.NO_ANSWER
    assert classify(480, False)[0] is CallResult.FAILED  # nobody registered: it never rang
    assert classify(404, False)[0] is CallResult.FAILED
    assert classify(None, False)[0] is CallResult.FAILED


@pytest.fixture
async def unicomm(tmp_path: Path) -> AsyncIterator[Unicomm]:
    server = await start_unicomm(tmp_path / "server", voip_media_workers=1)
    pool = server.http.app[PBX].pool
    assert pool is not None and all(worker.ready.is_set() for worker in pool.workers)
    yield server
    await server.stop()


async def records(server: Unicomm, count: int) -> list[CallRecord]:
    for _ in range(50):
        await server.voip.cdr.flush()
        async with server.ctx.db.session() as session:
            rows = list((await session.scalars(select(CallRecord).order_by(CallRecord.id))).all())
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} call records")


async def slots_free(server: Unicomm) -> None:
    pool = server.http.app[PBX].pool
    assert pool is not None
    for _ in range(50):
        if pool.in_use == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the media worker's slot was not given back")


async def test_an_answered_call_hears_the_text_spoken_twice(
    unicomm: Unicomm, tmp_path: Path, output_dir: Path
) -> None:
    heard = output_dir / "heard.wav"
    async with Phone.start("alice", log_dir=tmp_path) as alice:
        await alice.register("127.0.0.1", unicomm.sip_port, "1001", PASSWORD)
        placing = asyncio.create_task(
            place_call(unicomm.http.app, "1001", TEXT, language="en", caller_name="Duty office")
        )
        incoming = await alice.wait_incoming(timeout=15)
        assert "Duty office" in incoming.incoming["message"]  # type: ignore[index]
        await incoming.answer()
        await incoming.wait_state("CONFIRMED")
        await incoming.wait_media()
        await incoming.record(heard)
        # The exchange hangs up once the text was read twice.
        await incoming.wait_state("DISCONNECTED", timeout=40)
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
        outcome = await asyncio.wait_for(placing, 10)
    assert outcome.result is CallResult.ANSWERED and outcome.dialled
    assert outcome.sip_status == 200 and outcome.call_id
    audio = read_wav(heard)
    assert audio.seconds > 4.0  # two readings of a few seconds each
    assert rms_dbfs(heard) > -35.0  # speech, far above G.711 idle noise (about -70 dBFS)
    [row] = await records(unicomm, 1)
    assert (row.caller, row.callee, row.disposition) == ("alert", "1001", Disposition.ANSWERED)
    assert row.call_id == outcome.call_id and row.hangup_side == "caller"
    await slots_free(unicomm)


async def answered_with_keys(
    server: Unicomm, phone: Phone, collect: CollectDigits
) -> tuple[asyncio.Task[CallOutcome], Call]:
    """``phone`` registered as 1001, called with ``collect``; answered, its media up."""
    await phone.register("127.0.0.1", server.sip_port, "1001", PASSWORD)
    placing = asyncio.create_task(
        place_call(server.http.app, "1001", PRESS, language="en", collect=collect)
    )
    incoming = await phone.wait_incoming(timeout=15)
    await incoming.answer()
    await incoming.wait_state("CONFIRMED")
    await incoming.wait_media()
    return placing, incoming


async def test_a_key_pressed_during_the_reading_is_handed_over_and_confirmed(
    unicomm: Unicomm, tmp_path: Path, output_dir: Path
) -> None:
    heard = output_dir / "after-the-key.wav"
    accepted: list[str] = []

    async def on_accept(key: str) -> bool:
        accepted.append(key)
        return True

    collect = CollectDigits(accept="1", reply="Confirmed.", on_accept=on_accept)
    async with Phone.start("alice", log_dir=tmp_path) as alice:
        placing, incoming = await answered_with_keys(unicomm, alice, collect)
        await asyncio.sleep(2.0)  # into the first reading
        await incoming.send_dtmf("1")
        pressed = asyncio.get_running_loop().time()
        await incoming.record(heard)
        # The reading stops, "Confirmed." is said, and the exchange hangs up: long before
        # the two readings (about 12 s) would have ended.
        await incoming.wait_state("DISCONNECTED", timeout=15)
        ended = asyncio.get_running_loop().time() - pressed
        await asyncio.sleep(RECORDER_FINALISE_SECONDS)
        outcome = await asyncio.wait_for(placing, 10)
    assert accepted == ["1"]
    assert outcome.result is CallResult.ANSWERED and outcome.digits == "1" and outcome.confirmed
    assert "1 pressed" in outcome.detail
    assert ended < 6.0
    assert rms_dbfs(heard) > -35.0  # the reply was spoken (G.711 idle: about -70 dBFS)
    assert read_wav(heard).seconds < 5.0
    await slots_free(unicomm)


async def test_other_keys_are_noted_and_a_refused_key_gets_no_reply(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    async def refuse(key: str) -> bool:
        return False  # the caller could not record what the key means

    collect = CollectDigits(accept="1", reply="Confirmed.", on_accept=refuse)
    async with Phone.start("alice", log_dir=tmp_path) as alice:
        placing, incoming = await answered_with_keys(unicomm, alice, collect)
        await asyncio.sleep(1.5)
        await incoming.send_dtmf("9")  # not a key that counts: the reading goes on
        await asyncio.sleep(1.5)
        assert not placing.done()
        await incoming.send_dtmf("1")
        pressed = asyncio.get_running_loop().time()
        await incoming.wait_state("DISCONNECTED", timeout=15)
        ended = asyncio.get_running_loop().time() - pressed
        outcome = await asyncio.wait_for(placing, 10)
    assert outcome.result is CallResult.ANSWERED
    assert (outcome.digits, outcome.confirmed) == ("91", False)
    assert "not confirmed" in outcome.detail
    assert ended < 3.0  # no reply: hung up at once
    await slots_free(unicomm)


async def test_busy_no_answer_and_unreachable_are_told_apart(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    app = unicomm.http.app
    async with Phone.start("bob", log_dir=tmp_path) as bob:
        await bob.register("127.0.0.1", unicomm.sip_port, "1002", PASSWORD)
        placing = asyncio.create_task(place_call(app, "1002", TEXT, language="en"))
        incoming = await bob.wait_incoming(timeout=15)
        await incoming.reject(486)
        busy = await asyncio.wait_for(placing, 15)
        assert (busy.result, busy.sip_status, busy.dialled) == (CallResult.BUSY, 486, True)

        placing = asyncio.create_task(place_call(app, "1002", TEXT, ring_seconds=2))
        await bob.wait_incoming(timeout=15)  # left ringing
        unanswered = await asyncio.wait_for(placing, 20)
        assert unanswered.result is CallResult.NO_ANSWER and unanswered.dialled
    nobody = await place_call(app, "1003", TEXT, ring_seconds=2)  # no phone registered
    assert nobody.result is CallResult.FAILED and nobody.sip_status == 480
    unknown = await place_call(app, "4711", TEXT)
    assert unknown.result is CallResult.FAILED and unknown.sip_status == 404
    feature = await place_call(app, "*44", TEXT)  # not a number to ring: refused
    assert feature.result is CallResult.FAILED and feature.sip_status == 403
    rows = await records(unicomm, 5)
    assert [(r.callee, r.disposition) for r in rows] == [
        ("1002", Disposition.BUSY),
        ("1002", Disposition.NO_ANSWER),
        ("1003", Disposition.UNAVAILABLE),
        ("4711", Disposition.NOT_FOUND),
        ("*44", Disposition.REJECTED),
    ]
    await slots_free(unicomm)


async def test_a_full_media_pool_is_busy_at_once(unicomm: Unicomm, tmp_path: Path) -> None:
    app = unicomm.http.app
    async with Phone.start("alice", log_dir=tmp_path) as alice:
        await alice.register("127.0.0.1", unicomm.sip_port, "1001", PASSWORD)
        calls = [await alice.call(f"sip:*44@127.0.0.1:{unicomm.sip_port}") for _ in range(4)]
        for call in calls:
            await call.wait_state("CONFIRMED")
        dialled: list[bool] = []

        async def before_dial() -> bool:
            dialled.append(True)
            return True

        outcome = await asyncio.wait_for(place_call(app, "1002", TEXT, before_dial=before_dial), 5)
        assert outcome.result is CallResult.BUSY and not outcome.dialled
        assert dialled == []  # nothing was about to ring: the caller may try again later
        for call in calls:
            await call.hangup()
    rows = await records(unicomm, 5)
    refused = [r for r in rows if r.callee == "1002"]
    assert [(r.disposition, r.sip_status, r.hangup_side) for r in refused] == [
        (Disposition.BUSY, 486, "system")
    ]


async def test_before_dial_can_call_it_off_and_strangers_cannot_borrow_an_origination(
    unicomm: Unicomm, tmp_path: Path
) -> None:
    app = unicomm.http.app

    async def no() -> bool:
        return False

    async with Phone.start("bob", log_dir=tmp_path) as bob:
        await bob.register("127.0.0.1", unicomm.sip_port, "1002", PASSWORD)
        outcome = await place_call(app, "1002", TEXT, before_dial=no)
        assert outcome.result is CallResult.CANCELLED and not outcome.dialled
        await asyncio.sleep(0.5)
        assert bob.events.find(lambda e: e.get("event") == "incoming") is None
        # An INVITE that only claims to be an origination is challenged like any other.
        async with Phone.start("mallory", log_dir=tmp_path) as mallory:
            call = await mallory.call(
                f"sip:1002@127.0.0.1:{unicomm.sip_port}",
                account="local",
                headers={"X-Unicomm-Origination": "guessed-token"},
            )
            ended = await call.phone.events.wait(
                lambda e: (
                    e.get("event") == "call_state"
                    and e.get("call") == call.id
                    and e["state"] == "DISCONNECTED"
                ),
                10,
                "the stranger's call to be refused",
                call.since,
            )
            assert ended["code"] in (401, 407)
    await slots_free(unicomm)


CARRIER = "127.0.0.2"  # the SIPp carrier's own loopback address


@pytest.fixture
async def carrier(tmp_path: Path) -> AsyncIterator[Sipp]:
    """A SIPp carrier that registers the trunk, answers INVITEs at once and echoes RTP."""
    sipp = Sipp(
        "carrier",
        users=[("trunkuser", "trunk-pw-1")],
        calls=10,
        work_dir=tmp_path / "carrier",
        extra_args=["-i", CARRIER, "-mi", CARRIER, "-rtp_echo"],
    )
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


async def test_an_e164_number_is_called_through_the_trunk_with_anchored_media(
    tmp_path: Path, carrier: Sipp
) -> None:
    server = await start_unicomm(
        tmp_path / "server",
        voip_media_workers=1,
        voip_trunk_host=CARRIER,
        voip_trunk_port=carrier.port,
        voip_trunk_domain="carrier.example",
        voip_trunk_username="trunkuser",
        voip_trunk_password="trunk-pw-1",
    )
    try:
        pbx = server.http.app[PBX]
        assert pbx.trunk is not None
        for _ in range(50):
            if pbx.trunk.registered:
                break
            await asyncio.sleep(0.1)
        outcome = await place_call(server.http.app, "+8613800138000", "Alert.", language="en")
        assert outcome.result is CallResult.ANSWERED, outcome
        [row] = await records(server, 1)
        assert (row.callee, row.direction, row.disposition) == (
            "13800138000",
            "outbound",
            Disposition.ANSWERED,
        )
    finally:
        await server.stop()
    await asyncio.sleep(0.2)
    await carrier.kill()
    result = carrier.result(0)
    [invite] = [m for m in result.received_messages if m.startswith("INVITE")]
    assert invite.startswith("INVITE sip:13800138000@carrier.example")  # national, no prefix
    assert "sip:trunkuser@" in invite.split("From:", 1)[1].split("\n", 1)[0]  # the trunk's ID
    assert "127.0.1.1" not in "\n".join(result.received_messages)  # never the worker's address
    assert "c=IN IP4 127.0.0.1" in invite  # the relay's
    assert "X-Unicomm-Origination" not in invite  # the token stays inside
