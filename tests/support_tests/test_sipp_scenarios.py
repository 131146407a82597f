"""The SIPp scenarios, checked against SIPp callees and a pjsua2 phone (no server)."""

from __future__ import annotations

from pathlib import Path

from support.phones import Phone
from support.sipp import Sipp, run_sipp


async def test_uac_call_against_uas_answer(tmp_path: Path) -> None:
    async with Sipp.start("uas_answer", service="1002", work_dir=tmp_path / "uas") as callee:
        caller = await run_sipp(
            "uac_call",
            f"127.0.0.1:{callee.port}",
            service="1002",
            duration_ms=200,
            work_dir=tmp_path / "uac",
            timeout=15,
        )
        assert caller.ok, caller.describe()
        answered = await callee.wait(10)
    assert answered.ok, answered.describe()
    assert [m.split(" ", 1)[0] for m in caller.sent_messages] == ["INVITE", "ACK", "BYE"]


async def test_uac_expect_status_reports_the_busy_answer(tmp_path: Path) -> None:
    async with Sipp.start("uas_busy", work_dir=tmp_path / "uas") as callee:
        caller = await run_sipp(
            "uac_expect_status", f"127.0.0.1:{callee.port}", work_dir=tmp_path / "uac"
        )
        assert (await callee.wait(10)).ok
    assert caller.ok, caller.describe()
    assert caller.final_statuses == [486]


async def test_uac_cancel_against_a_ringing_phone(tmp_path: Path) -> None:
    async with Phone.start("ringing", log_dir=tmp_path) as phone:
        caller = await run_sipp(
            "uac_cancel",
            f"127.0.0.1:{phone.sip_port}",
            service="ringing",
            work_dir=tmp_path / "uac",
            timeout=15,
        )
        assert caller.ok, caller.describe()
        call = await phone.wait_incoming()
        assert (await call.wait_state("DISCONNECTED")).code == 487


async def test_udp_retransmit_gets_the_same_answer_twice(tmp_path: Path) -> None:
    async with Phone.start("options", log_dir=tmp_path) as phone:
        result = await run_sipp(
            "udp_retransmit",
            f"127.0.0.1:{phone.sip_port}",
            keys={"ruri": phone.uri},
            work_dir=tmp_path / "uac",
            timeout=15,
        )
    assert result.ok, result.describe()
    first, second = result.received_messages
    assert first.startswith("SIP/2.0 200")
    assert first == second  # answered from pjsip's transaction layer
