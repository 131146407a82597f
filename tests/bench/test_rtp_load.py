"""bench/rtp_load.py, the media side of bench/sip_media.py: its parsing and counting, quickly.

The benchmark itself is never run by the suite (it takes minutes); this checks, in
well under a second on loopback, that a SIPp log line starts a call's stream, that the
echo end sends every packet back and that the counts add up.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rtp_load.py"


def rtp_load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_rtp_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_ulaw_frames_and_silence() -> None:
    load = rtp_load()
    assert load.ulaw(0) == 0xFF
    assert load.ulaw(32767) == 0x80
    assert load.ulaw(-32768) == 0x00
    frame = load.tone_payload()
    assert len(frame) == 160
    assert load.voiced(frame)
    assert not load.voiced(b"\xff" * 160)


def test_a_logged_answer_starts_the_stream_and_every_packet_comes_back(tmp_path: Path) -> None:
    module = rtp_load()
    phones = module.Load(3, "127.0.0.1")
    far = module.Load(2, "127.0.0.1", echo=True)
    caller_ports = sorted(phones.sockets)
    far_port = sorted(far.sockets)[0]
    log = tmp_path / "caller.log"
    log.write_text("")
    phones.follow({"cmd": "follow", "log": str(log), "send_seconds": 0.3, "voiced": True})
    far.follow({"cmd": "follow", "log": "", "send_seconds": 0})
    # What SIPp's <log> actions write (bench/sipp/media_caller.xml), a partial line last.
    log.write_text(
        f"answered {caller_ports[0]} 127.0.0.1 {far_port} (c=IN IP4 127.0.0.1 m=audio {far_port})\n"
        f"busy {caller_ports[1]}\nended {caller_ports[0]}\nansw"
    )
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        now = time.monotonic()
        phones.tail(now)
        phones.send_due(now)
        for fd, _mask in far.poller.poll(0.002):
            far.receive(fd, time.monotonic())
        for fd, _mask in phones.poller.poll(0.002):
            phones.receive(fd, time.monotonic())
    counts = phones.report()
    echo = far.report()
    assert counts["answered"] == 1
    assert counts["busy"] == 1
    assert counts["ended"] == 1
    assert 10 <= counts["sent"] <= 16  # 0.3 s of 20 ms packets
    assert counts["received"] == counts["sent"] == echo["echoed"]
    assert counts["voiced"] == counts["received"]  # the tone is no silence
    assert counts["lossy_calls"] == []
    assert counts["rtt_ms"] is not None and 0 <= counts["rtt_ms"]["p50"] < 500
    assert counts["drops"] == 0 and echo["drops"] == 0 and echo["stale"] == 0
