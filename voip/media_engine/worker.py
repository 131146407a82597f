"""A media worker: one pjsua2 process that answers calls the exchange routes to it.

Started by :class:`voip.media_engine.pool.MediaPool`, never by hand. It speaks JSON
lines with its parent on stdin/stdout (``voip.media_engine.protocol``): the parent
says what to do with a call (answer, play, record, echo, hang up, or place one to
the exchange), the worker reports what happens (incoming and outgoing calls,
states, DTMF digits, end of a prompt).

pjsua2 is driven as ``shared/notes/pjsua2.md`` prescribes: no library threads, one
asyncio loop that polls ``libHandleEvents(0)`` every few milliseconds, so every
callback runs on the loop's thread; the null sound device; a Python reference to
every Account and Call until the library is destroyed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import pjsua2 as pj

POLL_SECONDS = 0.005
MAX_CALLS = 4  # the wheel's PJSUA_MAX_CALLS: more is silently cut

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


class Channel:
    """Events and answers to the parent, on the stdout saved before the C library ran."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def event(self, kind: str, **fields: Any) -> None:
        self.send({"event": kind, **fields})


def request_user(whole_message: str) -> str:
    """The user part of the INVITE's Request-URI: the session the exchange opened for it."""
    first = whole_message.split("\r\n", 1)[0]
    parts = first.split(" ")
    if len(parts) < 2:
        return ""
    uri = parts[1]
    scheme_end = uri.find(":")
    at = uri.find("@")
    return uri[scheme_end + 1 : at] if 0 <= scheme_end < at else ""


class Player(pj.AudioMediaPlayer):  # type: ignore[misc]
    """A prompt; it tells the parent when a prompt played once has ended."""

    def __init__(self, worker: Worker, call_id: int) -> None:
        super().__init__()
        self.worker = worker
        self.call_id = call_id

    def onEof2(self) -> None:
        self.worker.channel.event("prompt_done", call=self.call_id)


class MediaCall(pj.Call):  # type: ignore[misc]
    def __init__(self, worker: Worker, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self.worker = worker
        self.player: Player | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.echo = False
        # A call this worker places (``call`` command): the parent's session token, told
        # with the call's id in an "outgoing" event before any state of the call.
        self.session: str | None = None
        self.announced = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        if self.session is not None and not self.announced:
            self.worker.announce(self)
        info = self.getInfo()
        self.worker.channel.event(
            "state",
            call=info.id,
            state=STATE_NAMES.get(info.state, str(info.state)),
            code=info.lastStatusCode,
        )
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            # Deleting a Call inside its own callback crashes pjsua2: retire it instead.
            self.worker.retire(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        audio = self.audio()
        self.worker.channel.event("media", call=self.getId(), active=audio is not None)
        self.connect()

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.worker.channel.event("dtmf", call=self.getId(), digit=prm.digit)

    def audio(self) -> pj.AudioMedia | None:
        # Keep the CallInfo alive while reading its media: SWIG's vector points into it.
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return self.getAudioMedia(index)
        return None

    def connect(self) -> None:
        """(Re)connect what the call should hear and keep; harmless when repeated."""
        audio = self.audio()
        if audio is None:
            return
        if self.echo:
            audio.startTransmit(audio)
        if self.player is not None:
            self.player.startTransmit(audio)
        if self.recorder is not None:
            audio.startTransmit(self.recorder)


class MediaAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = MediaCall(self.worker, self, prm.callId)
        self.worker.calls[prm.callId] = call
        self.worker.channel.event(
            "incoming", call=prm.callId, session=request_user(prm.rdata.wholeMsg)
        )
        ringing = pj.CallOpParam()
        ringing.statusCode = 180
        call.answer(ringing)


class Worker:
    def __init__(self, args: argparse.Namespace, channel: Channel) -> None:
        self.args = args
        self.channel = channel
        self.endpoint = pj.Endpoint()
        self.account: MediaAccount | None = None
        self.calls: dict[int, MediaCall] = {}
        self.retired: list[MediaCall] = []

    def start(self) -> None:
        ep = self.endpoint
        ep.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = True
        config.uaConfig.maxCalls = MAX_CALLS
        config.uaConfig.userAgent = "unicomm-media-worker"
        config.logConfig.level = 4 if self.args.log else 0
        config.logConfig.consoleLevel = 0
        if self.args.log:
            config.logConfig.filename = self.args.log
        config.medConfig.clockRate = 8000
        config.medConfig.sndClockRate = 8000
        config.medConfig.channelCount = 1
        config.medConfig.noVad = True
        ep.libInit(config)
        transport = pj.TransportConfig()
        transport.port = self.args.sip_port
        transport.boundAddress = self.args.host
        transport.publicAddress = self.args.host
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            # G.711 only, like the desk phones: no transcoding anywhere on the path.
            name = codec.codecId.split("/")[0].upper()
            ep.codecSetPriority(codec.codecId, {"PCMU": 255, "PCMA": 254}.get(name, 0))
        account_config = pj.AccountConfig()
        account_config.idUri = f"sip:media@{self.args.host}:{self.args.sip_port}"
        media = account_config.mediaConfig.transportConfig
        media.port = self.args.rtp_port
        media.portRange = self.args.rtp_port_count
        media.boundAddress = self.args.host
        account_config.natConfig.sdpNatRewriteUse = 0
        account_config.natConfig.udpKaIntervalSec = 0
        self.account = MediaAccount(self)
        self.account.create(account_config, True)

    def announce(self, call: MediaCall) -> None:
        """An outgoing call has its id: the parent learns it (and its Call-ID) first."""
        info = call.getInfo()
        call.announced = True
        self.calls[info.id] = call
        self.channel.event(
            "outgoing", call=info.id, session=call.session, call_id=info.callIdString
        )

    def retire(self, call: MediaCall) -> None:
        self.calls.pop(call.getId(), None)
        self.retired.append(call)

    def collect_retired(self) -> None:
        # Outside any callback, dropping the player/recorder ports is safe.
        for call in self.retired:
            call.player = None
            call.recorder = None
        self.retired.clear()

    def shutdown(self) -> None:
        ep = self.endpoint
        ep.hangupAllCalls()
        for _ in range(50):
            ep.libHandleEvents(10)
            if not self.calls:
                break
        self.collect_retired()
        for call in self.calls.values():
            call.player = None
            call.recorder = None
        self.calls.clear()
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        ep.libDestroy()

    # -- commands --------------------------------------------------------------------

    def call(self, request: dict[str, Any]) -> MediaCall:
        call = self.calls.get(int(request["call"]))
        if call is None:
            raise ValueError(f"no live call {request['call']}")
        return call

    def cmd_answer(self, request: dict[str, Any]) -> None:
        parameters = pj.CallOpParam()
        parameters.statusCode = int(request.get("code", 200))
        self.call(request).answer(parameters)

    def cmd_hangup(self, request: dict[str, Any]) -> None:
        parameters = pj.CallOpParam()
        if code := request.get("code"):
            parameters.statusCode = int(code)
        self.call(request).hangup(parameters)

    def cmd_play(self, request: dict[str, Any]) -> None:
        call = self.call(request)
        player = Player(self, call.getId())
        # PJMEDIA_FILE_NO_LOOP = 1: play once and report; 0: loop until stopped.
        player.createPlayer(request["path"], 0 if request.get("loop") else 1)
        call.player = player
        call.connect()

    def cmd_stop_play(self, request: dict[str, Any]) -> None:
        self.call(request).player = None

    def cmd_echo(self, request: dict[str, Any]) -> None:
        call = self.call(request)
        call.echo = True
        call.connect()

    def cmd_record(self, request: dict[str, Any]) -> None:
        call = self.call(request)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(request["path"])
        call.recorder = recorder
        call.connect()

    def cmd_transfer(self, request: dict[str, Any]) -> None:
        # Blind transfer by REFER; the exchange moves the caller and then hangs up on us.
        self.call(request).xfer(request["uri"], pj.CallOpParam(True))

    def cmd_call(self, request: dict[str, Any]) -> None:
        """Place a call to the exchange (``voip.place_call``); its headers name the session."""
        assert self.account is not None
        call = MediaCall(self, self.account, pj.PJSUA_INVALID_ID)
        call.session = str(request["session"])
        parameters = pj.CallOpParam(True)
        for name, value in (request.get("headers") or {}).items():
            header = pj.SipHeader()
            header.hName = str(name)
            header.hValue = str(value)
            parameters.txOption.headers.append(header)
        call.makeCall(str(request["uri"]), parameters)
        if not call.announced:
            self.announce(call)

    def cmd_stop_record(self, request: dict[str, Any]) -> None:
        # The WAV header is written a little after the port goes (about 0.3 s in 2.15).
        self.call(request).recorder = None

    def dispatch(self, line: bytes) -> bool:
        request: dict[str, Any] = {}
        try:
            request = json.loads(line)
            command = request.get("cmd")
            if command == "quit":
                return False
            handler = getattr(self, f"cmd_{command}", None)
            if handler is None:
                raise ValueError(f"unknown command {command!r}")
            handler(request)
        except pj.Error as error:
            self.channel.send(
                {"id": request.get("id"), "ok": False, "error": f"{error.title}: {error.reason}"}
            )
        except Exception as error:
            self.channel.send({"id": request.get("id"), "ok": False, "error": repr(error)})
        else:
            self.channel.send({"id": request.get("id"), "ok": True})
        return True


async def serve(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def pump() -> None:
        while True:
            worker.endpoint.libHandleEvents(0)
            worker.collect_retired()
            await asyncio.sleep(POLL_SECONDS)

    pumping = loop.create_task(pump())
    try:
        while line := await reader.readline():  # EOF: the exchange is gone, so are we
            if line.strip() and not worker.dispatch(line):
                break
    finally:
        pumping.cancel()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp-port", type=int, required=True)
    parser.add_argument("--rtp-port-count", type=int, default=4 * MAX_CALLS)
    parser.add_argument("--log", default="", help="pjsua2 log file (empty: none)")
    args = parser.parse_args(argv)
    channel = Channel(os.dup(1))
    os.dup2(2, 1)  # whatever the C library prints goes to stderr, never into the channel
    sys.stdout = sys.stderr
    worker = Worker(args, channel)
    try:
        worker.start()
    except pj.Error as error:
        channel.event("fatal", error=f"{error.title}: {error.reason}")
        return 1
    channel.event("ready", sip_port=args.sip_port, rtp_port=args.rtp_port, pid=os.getpid())
    try:
        asyncio.run(serve(worker))
    finally:
        worker.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
