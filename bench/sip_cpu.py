"""CPU cost of one call through unicomm's SIP core, in process, without sockets.

    .venv/bin/python bench/sip_cpu.py [--calls 4000] [--batch 100] [--rounds 3]

The real VoipServer (endpoint, transaction layer, registrar, B2BUA, digest auth, CDR
writer on SQLite) is started as the tests start it; its UDP socket is then replaced by
a list, and scripted phones feed it the datagrams SIPp would send: INVITE, 407, ACK,
INVITE with credentials, 100/180/200 from the callee, ACK, BYE, 200. The process CPU
time per call is what the server spends (the phones' scripted bytes cost little), so
changes to the hot path can be compared on a busy machine where throughput cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import support.sipserver as sipserver  # noqa: E402

from core.cli import tune_gc  # noqa: E402
from core.logs import configure_logging  # noqa: E402
from voip.transport.base import Flow  # noqa: E402

CALLER = Flow("UDP", "127.0.0.1", 40000)
CALLEE = Flow("UDP", "127.0.0.1", 40001)
SDP = (
    "v=0\r\no=sipp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
_NONCE = re.compile(rb'nonce="([^"]+)"')


class Wire:
    """Stands in for the UDP socket: what the server sends, per destination port."""

    def __init__(self) -> None:
        self.sent: dict[int, list[bytes]] = {CALLER.port: [], CALLEE.port: []}

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.setdefault(address[1], []).append(data)

    def close(self) -> None:
        return None

    def take(self, port: int) -> list[bytes]:
        messages, self.sent[port] = self.sent[port], []
        return messages


def header(message: bytes, name: bytes) -> bytes:
    start = message.index(b"\r\n" + name + b":") + len(name) + 3
    return message[start : message.index(b"\r\n", start)].strip()


def headers_block(message: bytes, name: bytes) -> bytes:
    return b"".join(
        line + b"\r\n" for line in message.split(b"\r\n") if line.startswith(name + b":")
    )


def invite(n: int, port: int, auth: str = "", cseq: int = 1) -> bytes:
    body = SDP.encode()
    return (
        f"INVITE sip:2000@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-c{n}-{cseq};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@unicomm>;tag=caller{n}\r\nTo: <sip:2000@unicomm>\r\n"
        f"Call-ID: call-{n}@bench\r\nCSeq: {cseq} INVITE\r\n"
        "Contact: <sip:1001@127.0.0.1:40000>\r\n"
        f"{auth}Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def request(method: str, uri: bytes, n: int, to: bytes, cseq: int, branch: str) -> bytes:
    return (
        f"{method} ".encode()
        + uri
        + (
            " SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:1001@unicomm>;tag=caller{n}\r\n"
        ).encode()
        + b"To: "
        + to
        + f"\r\nCall-ID: call-{n}@bench\r\nCSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )


def answer(incoming: bytes, status: str, tag: str, *, sdp: bool = False) -> bytes:
    body = SDP.encode() if sdp else b""
    to = header(incoming, b"To")
    if b";tag=" not in to:
        to += f";tag={tag}".encode()
    return (
        f"SIP/2.0 {status}\r\n".encode()
        + headers_block(incoming, b"Via")
        + b"From: "
        + header(incoming, b"From")
        + b"\r\nTo: "
        + to
        + b"\r\nCall-ID: "
        + header(incoming, b"Call-ID")
        + b"\r\nCSeq: "
        + header(incoming, b"CSeq")
        + b"\r\nContact: <sip:2000@127.0.0.1:40001>\r\n"
        + (b"Content-Type: application/sdp\r\n" if sdp else b"")
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def run(calls: int, batch: int, rounds: int, gc_mode: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sip-cpu-"))
    server = await sipserver.start_unicomm(
        folder, extensions=("1001", "2000"), sip_rate_limit=10**9
    )
    voip = server.voip
    if gc_mode == "serve":  # what `unicomm serve` does once started
        tune_gc()
    if gc_mode == "freeze":
        gc.collect()
        gc.freeze()
    if gc_mode == "threshold":
        gc.set_threshold(10_000, 20, 10)
    endpoint = voip.endpoint
    assert endpoint is not None
    wire = Wire()
    endpoint.udp = wire  # type: ignore[assignment]
    port = server.sip_port
    receive = endpoint.receive_datagram

    # The callee registers from its flow (401, then credentials), as SIPp's would.
    register = (
        "REGISTER sip:unicomm SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bK-r1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:2000@unicomm>;tag=r\r\nTo: <sip:2000@unicomm>\r\n"
        "Call-ID: reg@bench\r\nCSeq: 1 REGISTER\r\nContact: <sip:2000@127.0.0.1:40001>\r\n"
        "Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
    receive(register.encode(), CALLEE)
    await asyncio.sleep(0.05)
    [challenge] = [m for m in wire.take(CALLEE.port) if m.startswith(b"SIP/2.0 401")]
    nonce = _NONCE.search(challenge)[1].decode()  # type: ignore[index]
    ha1 = md5(f"2000:unicomm:{sipserver.PASSWORD}")
    response = md5(f"{ha1}:{nonce}:00000001:c:auth:{md5('REGISTER:sip:unicomm')}")
    authorization = (
        f'Authorization: Digest username="2000",realm="unicomm",nonce="{nonce}",'
        f'uri="sip:unicomm",response="{response}",algorithm=MD5,qop=auth,nc=00000001,cnonce="c"\r\n'
    )
    receive(
        register.replace("branch=z9hG4bK-r1", "branch=z9hG4bK-r2")
        .replace("CSeq: 1", "CSeq: 2")
        .replace("Expires:", authorization + "Expires:")
        .encode(),
        CALLEE,
    )
    for _ in range(100):
        await asyncio.sleep(0.05)
        if any(m.startswith(b"SIP/2.0 200") for m in wire.sent[CALLEE.port]):
            break
    else:
        raise RuntimeError("the callee could not register")

    # One caller nonce serves every call (nonces are stateless, their lifetime is minutes).
    receive(invite(0, port), CALLER)
    await asyncio.sleep(0.05)
    proxy_challenge = next(m for m in wire.take(CALLER.port) if m.startswith(b"SIP/2.0 407"))
    nonce = _NONCE.search(proxy_challenge)[1].decode()  # type: ignore[index]
    uri = f"sip:2000@127.0.0.1:{port}"
    ha1 = md5(f"1001:unicomm:{sipserver.PASSWORD}")
    response = md5(f"{ha1}:{nonce}:00000001:c:auth:{md5('INVITE:' + uri)}")
    proxy_auth = (
        f'Proxy-Authorization: Digest username="1001",realm="unicomm",nonce="{nonce}",'
        f'uri="{uri}",response="{response}",algorithm=MD5,qop=auth,nc=00000001,cnonce="c"\r\n'
    )
    wire.take(CALLEE.port)

    async def one_batch(first: int, count: int) -> int:
        numbers = range(first, first + count)
        for n in numbers:  # INVITE, 407
            receive(invite(n, port), CALLER)
        await settle()  # the B2BUA's INVITE tasks challenge
        replies = wire.take(CALLER.port)
        tos = {}
        for message in replies:
            if message.startswith(b"SIP/2.0 407"):
                n = int(header(message, b"Call-ID")[5:].split(b"@")[0])
                tos[n] = header(message, b"To")
        for n in numbers:  # ACK of the 407, INVITE with credentials
            uri_bytes = f"sip:2000@127.0.0.1:{port}".encode()
            receive(request("ACK", uri_bytes, n, tos[n], 1, f"c{n}-1"), CALLER)
            receive(invite(n, port, proxy_auth, cseq=2), CALLER)
        await settle()  # the B2BUA's INVITE tasks run
        forks = [m for m in wire.take(CALLEE.port) if m.startswith(b"INVITE")]
        for index, fork in enumerate(forks):  # the callee: 180, 200 with SDP
            receive(answer(fork, "180 Ringing", f"callee{index}"), CALLEE)
            receive(answer(fork, "200 OK", f"callee{index}", sdp=True), CALLEE)
        wire.take(CALLEE.port)  # our ACKs
        oks = [m for m in wire.take(CALLER.port) if m.startswith(b"SIP/2.0 200")]
        for message in oks:  # the caller: ACK, BYE
            n = int(header(message, b"Call-ID")[5:].split(b"@")[0])
            to = header(message, b"To")
            contact = header(message, b"Contact").strip(b"<>")
            receive(request("ACK", contact, n, to, 2, f"c{n}-a"), CALLER)
            receive(request("BYE", contact, n, to, 3, f"c{n}-b"), CALLER)
        byes = [m for m in wire.take(CALLEE.port) if m.startswith(b"BYE")]
        for bye in byes:  # the callee's 200 to our BYE
            receive(answer(bye, "200 OK", "x"), CALLEE)
        done = sum(1 for m in wire.take(CALLER.port) if b"CSeq: 3 BYE" in m)
        return done

    next_call = 1
    for round_number in range(rounds):
        completed = 0
        cpu, wall = time.process_time(), time.perf_counter()
        while completed < calls:
            completed += await one_batch(next_call, batch)
            next_call += batch
            await asyncio.sleep(0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"round {round_number + 1}: {completed} calls, {1e3 * cpu / completed:.3f} ms CPU "
            f"per call ({completed / wall:.0f} calls/s on one core), "
            f"{len(endpoint.layer)} transactions live",
            flush=True,
        )
    await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument(
        "--gc", choices=("default", "freeze", "threshold", "serve"), default="serve"
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run(args.calls, args.batch, args.rounds, args.gc))
    else:
        asyncio.run(run(args.calls, args.batch, args.rounds, args.gc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
