"""The media of bench/sip_media.py's SIPp phones: G.711 RTP sent, echoed and counted per call.

SIPp 3.6.1 (Debian's sip-tester) echoes RTP (``-rtp_echo``) and plays pcap files, but it
counts no RTP it receives, and all the calls of one SIPp share its media port: one
socket whose 208 KiB buffer (``-rtp_buffsize`` does not reach it) overflows when a
relay forwards a burst after a pause, so the loss measured would be SIPp's. Here every
call has sockets of its own, as real phones do, in two processes:

- the phones (default): the calling SIPp (bench/sipp/media_caller.xml) offers, per
  call, one of this process's ports (its injection file's field0) and logs the
  answer's media address; this process follows that log and, for each answered call,
  sends 20 ms PCMU packets (160 bytes, a 1 kHz tone) from the call's port to that
  address for ``send_seconds``, and counts what comes back to the port (the far end's
  echo, or a media worker's prompt);
- the far end (``--echo``): the called SIPp (bench/sipp/media_callee.xml) answers
  with one of this process's ports per call, and each packet arriving there goes
  back to its source, unless it waited more than STALE_SECONDS for this process.

One thread and one epoll per process. What the load generator loses itself is counted
apart: the kernel's drops at its own sockets and the far end's stale packets. Round
trips run from the send to the kernel's arrival stamp (SO_TIMESTAMPNS), so the phones'
own wait for a core is not in them; the far end's wait is reported beside them.

    python bench/rtp_load.py --ports 800 [--echo]

prints ``{"ports": [...]}`` once bound, then reads JSON commands on stdin, one a line:

- ``{"cmd": "follow", "log": PATH, "send_seconds": S, "voiced": false}``: a step
  begins, its SIPp writes PATH (``-trace_logs -log_file PATH``); ``voiced`` also
  counts the received frames that are not silence (a prompt was heard);
- ``{"cmd": "report", "settle": 1.0}``: once no call is sending any more, waits
  ``settle`` seconds for the last echoes, prints the step's counts as one JSON line
  and forgets the step.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import re
import resource
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKET_SECONDS = 0.020
SAMPLES = 160  # 20 ms at 8 kHz
RECEIVE_BUFFER = 1 << 20  # per socket (the kernel caps it at net.core.rmem_max)
# The far end does not echo a packet that waited longer than this for it: the phones stop
# sending 1.5 s before their BYE, so a later echo could be lost to the call's end.
STALE_SECONDS = 0.5
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; its control message too
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)  # struct timespec
_EVENT = re.compile(r"\b(answered|busy|ended) (\d+)(?: (\S+) (\d+))?")


def ulaw(sample: int) -> int:
    """G.711 u-law of one 16-bit linear sample (ITU-T G.711, the usual bias-and-segment way)."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone_payload(hz: float = 1000.0, level: float = 8000.0) -> bytes:
    """One 20 ms frame of a tone whose period divides 20 ms (1 kHz): every frame alike."""
    return bytes(ulaw(int(level * math.sin(2 * math.pi * hz * n / 8000))) for n in range(SAMPLES))


def arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time of a datagram (SO_TIMESTAMPNS), wall clock; now without."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


def voiced(payload: bytes) -> bool:
    """A u-law frame that is not silence (the spread of its bytes is more than noise)."""
    if len(payload) < 16:
        return False
    return max(payload) - min(payload) > 8


@dataclass
class Call:
    port: int
    sock: socket.socket
    ssrc: int
    dest: tuple[str, int] | None = None
    answered_at: float = 0.0
    stop_at: float = 0.0
    next_send: float = 0.0
    seq: int = 0
    sent: int = 0
    received: int = 0
    voiced: int = 0
    first_received: float | None = None
    last_received: float | None = None
    longest_gap: float = 0.0  # the longest silence between two received packets, seconds
    busy: bool = False
    ended: bool = False
    sent_at: list[float] = field(default_factory=list)  # wall clock, by sequence number


@dataclass
class Step:
    log: Path
    send_seconds: float
    send: bool
    voiced: bool
    offset: int = 0
    partial: bytes = b""
    calls: dict[int, Call] = field(default_factory=dict)


def socket_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped at these UDP ports (a full receive buffer), so far."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 12 and int(fields[1].rsplit(":", 1)[1], 16) in ports:
            total += int(fields[-1])
    return total


class Load:
    def __init__(self, count: int, host: str, *, echo: bool = False) -> None:
        self.host = host
        self.echo = echo  # the far end: every packet goes back to where it came from
        self.echoed = 0
        self.stale = 0  # packets the far end got too late to echo (see reflect)
        self.waits: list[float] = []  # how long packets waited for the far end, seconds
        self.sockets: dict[int, socket.socket] = {}  # by port
        self.by_fd: dict[int, int] = {}  # fd -> port
        self.poller = select.epoll()
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # Room for seconds of a call's packets while this process waits for a core.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # the kernel's arrival time
            sock.bind((host, 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            self.sockets[port] = sock
            self.by_fd[sock.fileno()] = port
            self.poller.register(sock.fileno(), select.EPOLLIN)
        self.payload = tone_payload()
        self.step: Step | None = None
        self.stray = 0
        self.rtts: list[float] = []  # round trips of echoed packets, seconds
        self.heap: list[tuple[float, int]] = []
        self.late = 0.0  # the worst lateness of a send in this step, seconds
        self.cpu_at_follow = 0.0
        self.drops_at_follow = 0

    # -- the step ----------------------------------------------------------------------

    def follow(self, command: dict[str, Any]) -> None:
        self.echoed = 0
        self.stale = 0
        self.waits = []
        self.drops_at_follow = socket_drops(set(self.sockets))
        self.step = Step(
            Path(command.get("log") or "/nonexistent"),
            float(command["send_seconds"]),
            bool(command.get("send", True)),
            bool(command.get("voiced", False)),
        )
        self.heap.clear()
        self.stray = 0
        self.rtts = []
        self.late = 0.0
        self.cpu_at_follow = time.process_time()

    def tail(self, now: float) -> None:
        step = self.step
        if step is None:
            return
        try:
            with step.log.open("rb") as handle:
                handle.seek(step.offset)
                data = handle.read()
        except OSError:
            return
        if not data:
            return
        step.offset += len(data)
        lines = (step.partial + data).split(b"\n")
        step.partial = lines.pop()
        for line in lines:
            match = _EVENT.search(line.decode(errors="replace"))
            if match:
                self.event(step, now, match)

    def event(self, step: Step, now: float, match: re.Match[str]) -> None:
        kind, port = match[1], int(match[2])
        sock = self.sockets.get(port)
        if sock is None:
            return
        call = step.calls.get(port)
        if call is None:
            call = step.calls[port] = Call(port, sock, ssrc=(port * 2654435761) & 0xFFFFFFFF)
        if kind == "busy":
            call.busy = True
        elif kind == "ended":
            call.ended = True
        elif kind == "answered" and match[3] and call.dest is None:
            call.dest = (match[3], int(match[4]))
            call.answered_at = now
            call.next_send = now
            call.stop_at = now + step.send_seconds if step.send else now
            if step.send:
                heapq.heappush(self.heap, (now, port))

    def send_due(self, now: float) -> None:
        step = self.step
        if step is None:
            return
        header = struct.Struct("!BBHII")
        while self.heap and self.heap[0][0] <= now:
            due, port = heapq.heappop(self.heap)
            call = step.calls[port]
            if now >= call.stop_at or call.dest is None:
                # Even a packet that was due earlier: this process got no core in time, and a
                # packet sent now could cross the BYE (it would count as lost in the relay).
                continue
            self.late = max(self.late, now - due)
            marker = 0x80 if call.seq == 0 else 0
            stamp = (call.seq * SAMPLES) & 0xFFFFFFFF
            packet = header.pack(0x80, marker, call.seq & 0xFFFF, stamp, call.ssrc) + self.payload
            try:
                call.sock.sendto(packet, call.dest)
                call.sent += 1
                call.sent_at.append(time.time())
            except BlockingIOError:
                pass  # the send buffer is full: the packet is lost on our side, not counted
            except OSError:
                pass
            if len(call.sent_at) <= call.seq:
                call.sent_at.append(math.nan)  # not sent: no round trip to time
            call.seq += 1
            call.next_send = due + PACKET_SECONDS
            if call.next_send < call.stop_at:
                heapq.heappush(self.heap, (call.next_send, port))

    def receive(self, fd: int, now: float) -> None:
        port = self.by_fd[fd]
        sock = self.sockets[port]
        if self.echo:
            self.reflect(sock)
            return
        step = self.step
        call = step.calls.get(port) if step is not None else None
        while True:
            try:
                data, ancillary, _flags, _source = sock.recvmsg(2048, _TIMESTAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error (port unreachable) surfaced on this socket
            if call is None or call.dest is None:
                self.stray += 1
                continue
            call.received += 1
            if call.first_received is None:
                call.first_received = now
            elif call.last_received is not None:
                call.longest_gap = max(call.longest_gap, now - call.last_received)
            call.last_received = now
            if step is not None and step.voiced and voiced(data[12:]):
                call.voiced += 1
            if data[8:12] == call.ssrc.to_bytes(4, "big"):
                # Our own packet back (the echo): how long the round trip took.
                seq = int.from_bytes(data[2:4], "big")
                if seq < len(call.sent_at) and not math.isnan(call.sent_at[seq]):
                    # From the send to the kernel's arrival stamp: our own wait is not in it.
                    self.rtts.append(arrival(ancillary) - call.sent_at[seq])

    def reflect(self, sock: socket.socket) -> None:
        while True:
            try:
                data, ancillary, _flags, source = sock.recvmsg(2048, _TIMESTAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            waited = time.time() - arrival(ancillary)
            self.waits.append(waited)
            if waited > STALE_SECONDS:
                # This process got no core for that long: echoed now, the packet could
                # reach the relay after the call's BYE and count as the relay's loss.
                self.stale += 1
                continue
            try:
                sock.sendto(data, source)
                self.echoed += 1
            except OSError:
                pass

    def sending(self) -> bool:
        return bool(self.heap)

    def report(self) -> dict[str, Any]:
        drops = socket_drops(set(self.sockets)) - self.drops_at_follow
        if self.echo:
            self.step = None
            return {
                "echoed": self.echoed,
                "stale": self.stale,
                "wait_ms": _quantiles(self.waits),
                "drops": drops,
                "cpu": time.process_time() - self.cpu_at_follow,
            }
        step = self.step
        calls = list(step.calls.values()) if step is not None else []
        answered = [c for c in calls if c.dest is not None]
        losses = sorted(1 - c.received / c.sent for c in answered if c.sent)
        firsts = sorted(
            c.first_received - c.answered_at for c in answered if c.first_received is not None
        )
        result = {
            "answered": len(answered),
            "busy": sum(1 for c in calls if c.busy),
            "ended": sum(1 for c in calls if c.ended),
            "sent": sum(c.sent for c in answered),
            "received": sum(c.received for c in answered),
            "voiced": sum(c.voiced for c in answered),
            "silent_calls": sum(1 for c in answered if c.received == 0),
            "received_per_call": sorted(c.received for c in answered),
            "voiced_per_call": sorted(c.voiced for c in answered),
            "worst_call_loss": losses[-1] if losses else None,
            # Round trip phone -> relay -> far end -> relay -> phone, ms: a relay that
            # falls behind shows here before it loses packets.
            "rtt_ms": _quantiles(self.rtts),
            "first_packet_p50": firsts[len(firsts) // 2] if firsts else None,
            "first_packet_max": firsts[-1] if firsts else None,
            # The calls that lost packets: where in the call (seconds from the answer).
            "lossy_calls": [
                {
                    "sent": c.sent,
                    "received": c.received,
                    "first": _rounded(c.first_received, c.answered_at),
                    "last": _rounded(c.last_received, c.answered_at),
                    "stop": round(c.stop_at - c.answered_at, 3),
                    "longest_gap": round(c.longest_gap, 3),
                }
                for c in answered
                if c.received < c.sent
            ][:20],
            "stray": self.stray,
            "drops": drops,  # at our own sockets: packets this process was too slow to read
            "late_max": self.late,
            "cpu": time.process_time() - self.cpu_at_follow,
        }
        self.step = None
        self.heap.clear()
        return result


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)}


def _rounded(moment: float | None, origin: float) -> float | None:
    return None if moment is None else round(moment - origin, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, required=True, help="calls at once, at most")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--echo", action="store_true", help="be the far end: echo each packet")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    load = Load(args.ports, args.host, echo=args.echo)
    print(json.dumps({"ports": sorted(load.sockets)}), flush=True)

    stdin = sys.stdin.buffer.raw  # type: ignore[attr-defined]
    os.set_blocking(stdin.fileno(), False)
    load.poller.register(stdin.fileno(), select.EPOLLIN | select.EPOLLHUP)
    pending = b""
    report_at: float | None = None  # when a report is asked: print it once settled
    settle = 1.0
    next_tail = 0.0
    while True:
        now = time.monotonic()
        if now >= next_tail:
            load.tail(now)
            next_tail = now + 0.02
        load.send_due(now)
        if report_at is not None:
            if load.sending():
                report_at = now  # the settling starts when the last call stops sending
            elif now >= report_at + settle:
                load.tail(now)
                print(json.dumps(load.report()), flush=True)
                report_at = None
        wake = next_tail if report_at is None else min(next_tail, report_at + settle)
        if load.heap:
            wake = min(wake, load.heap[0][0])
        timeout = max(0.0, wake - time.monotonic())
        for fd, _mask in load.poller.poll(timeout):
            if fd == stdin.fileno():
                chunk = stdin.read(65536)
                if not chunk:
                    return 0  # the bench is gone
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    command = json.loads(line)
                    if command["cmd"] == "follow":
                        load.follow(command)
                    elif command["cmd"] == "report":
                        settle = float(command.get("settle", 1.0))
                        report_at = time.monotonic()
                    elif command["cmd"] == "quit":
                        return 0
            else:
                load.receive(fd, time.monotonic())


if __name__ == "__main__":
    sys.exit(main())
