"""A SIP phone on pjsua2, one per process, driven by JSON lines on stdin/stdout.

Run by ``support.phones.Phone``; not imported by tests. The protocol:

- the parent writes one command per line: ``{"id": 1, "cmd": "call", "uri": "sip:..."}``;
- the phone answers each command with ``{"id": 1, "ok": true, "result": ...}`` or
  ``{"id": 1, "ok": false, "error": "..."}`` as soon as the command has been *started*;
- everything that happens later (registration state, call states, incoming calls,
  DTMF digits, media state) is an unsolicited ``{"event": ...}`` line.

pjsua2 is driven the way ``../shared/notes/pjsua2.md`` prescribes for this platform:
no worker threads (``threadCnt = 0``, ``mainThreadOnly``), the main loop polls
``libHandleEvents`` and stdin in turn, so every callback runs on this one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
from typing import Any

import pjsua2 as pj

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


class Protocol:
    """Writes answers and events on the saved stdout; fd 1 itself goes to the log."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def event(self, kind: str, **fields: Any) -> None:
        self.send({"event": kind, **fields})


class PhoneCall(pj.Call):  # type: ignore[misc]
    """A call that reports its states and connects its player/recorder once media flows."""

    def __init__(self, phone: PhoneApp, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.phone = phone
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.player_connected = False
        self.recorder_connected = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        state = STATE_NAMES.get(info.state, str(info.state))
        self.phone.protocol.event(
            "call_state",
            call=info.id,
            state=state,
            code=info.lastStatusCode,
            reason=info.lastReason,
            remote=info.remoteUri,
        )
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            # Deleting a Call inside its own callback crashes pjsua2: retire it instead.
            self.phone.retire(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        active = any(
            media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE
            for media in info.media
        )
        statuses = [int(media.status) for media in info.media]
        self.phone.protocol.event("media_state", call=info.id, active=active, statuses=statuses)
        self.connect_media()

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.phone.protocol.event("dtmf", call=self.getId(), digit=prm.digit)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        # The NOTIFYs (RFC 3515 sipfrag) about a REFER this phone sent.
        self.phone.protocol.event(
            "transfer_status",
            call=self.getId(),
            code=prm.statusCode,
            reason=prm.reason,
            final=bool(prm.finalNotify),
        )

    def audio(self) -> pj.AudioMedia | None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
            ):
                return self.getAudioMedia(index)
        return None

    def connect_media(self) -> None:
        audio = self.audio()
        if audio is None:
            return
        # Re-connecting after a re-INVITE is harmless: the bridge ignores a duplicate link.
        if self.player is not None:
            self.player.startTransmit(audio)
            self.player_connected = True
        if self.recorder is not None:
            audio.startTransmit(self.recorder)
            self.recorder_connected = True


class PhoneAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: PhoneApp, name: str) -> None:
        super().__init__()
        self.phone = phone
        self.name = name

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        self.phone.protocol.event(
            "reg_state",
            account=self.name,
            code=prm.code,
            reason=prm.reason,
            expiration=prm.expiration,
            active=info.regIsActive,
        )

    def onMwiInfo(self, prm: pj.OnMwiInfoParam) -> None:
        # A message-summary NOTIFY (RFC 3842), unsolicited or from a subscription.
        message = prm.rdata.wholeMsg
        self.phone.protocol.event(
            "mwi",
            account=self.name,
            state=int(prm.state),
            body=message.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in message else "",
        )

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = PhoneCall(self.phone, self, prm.callId)
        self.phone.calls[prm.callId] = call
        info = call.getInfo()
        self.phone.protocol.event(
            "incoming",
            call=prm.callId,
            account=self.name,
            remote=info.remoteUri,
            local=info.localUri,
            message=prm.rdata.wholeMsg,
        )
        if self.phone.auto_ringing:
            ringing = pj.CallOpParam()
            ringing.statusCode = 180
            call.answer(ringing)


class PhoneApp:
    def __init__(self, args: argparse.Namespace, protocol: Protocol) -> None:
        self.args = args
        self.protocol = protocol
        self.auto_ringing: bool = args.auto_ringing
        self.calls: dict[int, PhoneCall] = {}
        self.retired: list[PhoneCall] = []
        self.accounts: dict[str, PhoneAccount] = {}
        self.transports: dict[str, int] = {}
        self.account_transports: dict[str, str] = {}
        self.endpoint = pj.Endpoint()
        self.running = True

    # --- set-up and tear-down ----------------------------------------------------------

    def start(self) -> None:
        ep = self.endpoint
        ep.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = True
        config.uaConfig.maxCalls = 4
        config.uaConfig.userAgent = f"unicomm-test-pjsua2/{self.args.name}"
        config.logConfig.level = 5
        config.logConfig.consoleLevel = 0
        config.logConfig.filename = self.args.log
        config.logConfig.msgLogging = True
        config.medConfig.clockRate = self.args.clock_rate
        config.medConfig.sndClockRate = self.args.clock_rate
        config.medConfig.channelCount = 1
        # No jitter when nothing is played: keep silence as silence in recordings.
        config.medConfig.noVad = True
        ep.libInit(config)
        for name, kind in (("udp", pj.PJSIP_TRANSPORT_UDP), ("tcp", pj.PJSIP_TRANSPORT_TCP)):
            transport = pj.TransportConfig()
            transport.port = self.args.sip_port
            transport.boundAddress = self.args.host
            transport.publicAddress = self.args.host
            self.transports[name] = ep.transportCreate(kind, transport)
        ep.libStart()
        ep.audDevManager().setNullDev()
        self.set_codecs(self.args.codecs.split(","))
        self.add_account("local", self.local_account_config())

    def set_codecs(self, wanted: list[str]) -> None:
        """Only the named codecs are offered, in that order (G.711 like a desk phone)."""
        ep = self.endpoint
        for codec in ep.codecEnum2():
            encoding = codec.codecId.split("/")[0]
            priority = 0
            if encoding.upper() in (name.upper() for name in wanted):
                index = [name.upper() for name in wanted].index(encoding.upper())
                priority = 255 - index
            ep.codecSetPriority(codec.codecId, priority)

    def media_config(self, config: pj.AccountConfig) -> None:
        config.mediaConfig.transportConfig.port = self.args.rtp_port
        config.mediaConfig.transportConfig.portRange = self.args.rtp_port_count
        config.mediaConfig.transportConfig.boundAddress = self.args.host
        config.natConfig.sdpNatRewriteUse = 0
        config.natConfig.udpKaIntervalSec = 0

    def local_account_config(self) -> pj.AccountConfig:
        config = pj.AccountConfig()
        config.idUri = f"sip:{self.args.name}@{self.args.host}:{self.args.sip_port}"
        self.media_config(config)
        return config

    def add_account(self, name: str, config: pj.AccountConfig) -> PhoneAccount:
        account = PhoneAccount(self, name)
        account.create(config, name == "local")  # the local account is the default
        self.accounts[name] = account
        return account

    def retire(self, call: PhoneCall) -> None:
        self.calls.pop(call.getId(), None)
        self.retired.append(call)

    def collect_retired(self) -> None:
        # Run from the main loop, outside any callback, so deleting is safe.
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
        for account in self.accounts.values():
            account.shutdown()
        self.accounts.clear()
        ep.libDestroy()

    # --- commands -------------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> Any:
        command = request.get("cmd")
        handler = getattr(self, f"cmd_{command}", None)
        if handler is None:
            raise ValueError(f"unknown command {command!r}")
        return handler(request)

    def call_for(self, request: dict[str, Any]) -> PhoneCall:
        if (call_id := request.get("call")) is not None:
            call = self.calls.get(int(call_id))
            if call is None:
                raise ValueError(f"no live call {call_id}")
            return call
        if not self.calls:
            raise ValueError("no live call")
        return self.calls[max(self.calls)]

    def cmd_ping(self, request: dict[str, Any]) -> Any:
        return {"sip_port": self.args.sip_port, "rtp_port": self.args.rtp_port}

    def cmd_register(self, request: dict[str, Any]) -> Any:
        transport: str = request.get("transport", "udp")
        host, port = request["host"], int(request["port"])
        domain = request.get("domain") or host
        suffix = ";transport=tcp" if transport == "tcp" else ""
        config = pj.AccountConfig()
        config.idUri = f"sip:{request['user']}@{domain}"
        config.regConfig.registrarUri = f"sip:{host}:{port}{suffix}"
        config.regConfig.timeoutSec = int(request.get("expires", 300))
        config.regConfig.retryIntervalSec = 0  # report a failure, do not retry quietly
        config.sipConfig.transportId = self.transports[transport]
        credentials = pj.AuthCredInfo(
            "digest", request.get("realm", "*"), request["user"], 0, request["password"]
        )
        config.sipConfig.authCreds.append(credentials)
        # SUBSCRIBE to message-summary after registering (RFC 3842), when asked.
        config.mwiConfig.enabled = bool(request.get("mwi_subscribe", False))
        self.media_config(config)
        old = self.accounts.pop("registered", None)
        if old is not None:
            old.shutdown()
        self.add_account("registered", config)
        self.account_transports["registered"] = transport
        return {"transport": transport}

    def cmd_unregister(self, request: dict[str, Any]) -> Any:
        account = self.accounts.get("registered")
        if account is None:
            raise ValueError("not registered")
        account.setRegistration(False)
        return None

    def cmd_call(self, request: dict[str, Any]) -> Any:
        name = request.get("account") or (
            "registered" if "registered" in self.accounts else "local"
        )
        account = self.accounts[name]
        uri: str = request["uri"]
        if self.account_transports.get(name) == "tcp" and "transport=" not in uri:
            # Follow the account's transport: a TCP-registered phone calls over TCP too.
            uri += ";transport=tcp"
        call = PhoneCall(self, account)
        parameters = pj.CallOpParam(True)
        for header_name, value in (request.get("headers") or {}).items():
            header = pj.SipHeader()
            header.hName = header_name
            header.hValue = value
            parameters.txOption.headers.append(header)
        call.makeCall(uri, parameters)
        self.calls[call.getId()] = call
        return {"call": call.getId()}

    def cmd_answer(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        parameters = pj.CallOpParam()
        parameters.statusCode = int(request.get("code", 200))
        call.answer(parameters)
        return {"call": call.getId()}

    def cmd_hangup(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        parameters = pj.CallOpParam()
        if code := request.get("code"):
            parameters.statusCode = int(code)
        call.hangup(parameters)
        return {"call": call.getId()}

    def cmd_hold(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        call.setHold(pj.CallOpParam(True))
        return {"call": call.getId()}

    def cmd_unhold(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        parameters = pj.CallOpParam(True)
        parameters.opt.flag = pj.PJSUA_CALL_UNHOLD
        call.reinvite(parameters)
        return {"call": call.getId()}

    def cmd_reinvite(self, request: dict[str, Any]) -> Any:
        """A re-INVITE; with ``offer`` false it carries no SDP (the offer comes in the 2xx)."""
        call = self.call_for(request)
        parameters = pj.CallOpParam(True)
        parameters.opt.flag = pj.PJSUA_CALL_UNHOLD
        if not request.get("offer", True):
            parameters.opt.flag |= pj.PJSUA_CALL_NO_SDP_OFFER
        call.reinvite(parameters)
        return {"call": call.getId()}

    def cmd_transfer(self, request: dict[str, Any]) -> Any:
        """Blind transfer: REFER with Refer-To ``uri``."""
        call = self.call_for(request)
        call.xfer(request["uri"], pj.CallOpParam(True))
        return {"call": call.getId()}

    def cmd_transfer_replaces(self, request: dict[str, Any]) -> Any:
        """Attended transfer: REFER naming call ``other`` in Replaces (RFC 3891)."""
        call = self.call_for(request)
        other = self.calls[int(request["other"])]
        call.xferReplaces(other, pj.CallOpParam(True))
        return {"call": call.getId()}

    def cmd_dtmf(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        call.dialDtmf(request["digits"])  # RFC 4733 telephone-event by default
        return {"call": call.getId()}

    def cmd_play(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        player = pj.AudioMediaPlayer()
        player.createPlayer(request["path"], 0)  # 0: loop the file
        call.player = player
        call.connect_media()
        return {"call": call.getId(), "connected": call.player_connected}

    def cmd_stop_play(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        call.player = None
        call.player_connected = False
        return {"call": call.getId()}

    def cmd_record(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(request["path"])
        call.recorder = recorder
        call.connect_media()
        return {"call": call.getId(), "connected": call.recorder_connected}

    def cmd_stop_record(self, request: dict[str, Any]) -> Any:
        call = self.call_for(request)
        # Dropping the recorder removes its port; the WAV header is written a little later.
        call.recorder = None
        call.recorder_connected = False
        return {"call": call.getId()}

    def cmd_quit(self, request: dict[str, Any]) -> Any:
        self.running = False
        return None

    # --- main loop ------------------------------------------------------------------------

    def run(self, stdin_fd: int) -> None:
        buffer = b""
        while self.running:
            self.endpoint.libHandleEvents(5)
            self.collect_retired()
            readable, _, _ = select.select([stdin_fd], [], [], 0)
            if not readable:
                continue
            chunk = os.read(stdin_fd, 65536)
            if not chunk:  # the test process is gone: leave with it
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    self.dispatch(line)

    def dispatch(self, line: bytes) -> None:
        request: dict[str, Any] = {}
        try:
            request = json.loads(line)
            result = self.handle(request)
        except pj.Error as error:
            self.protocol.send(
                {"id": request.get("id"), "ok": False, "error": f"{error.title}: {error.reason}"}
            )
        except Exception as error:
            self.protocol.send({"id": request.get("id"), "ok": False, "error": repr(error)})
        else:
            self.protocol.send({"id": request.get("id"), "ok": True, "result": result})


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="user part of the phone's own URI")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--sip-port", type=int, required=True, help="UDP and TCP")
    parser.add_argument("--rtp-port", type=int, required=True)
    parser.add_argument("--rtp-port-count", type=int, default=20)
    parser.add_argument("--codecs", default="PCMU,PCMA")
    parser.add_argument("--clock-rate", type=int, default=8000)
    parser.add_argument("--log", required=True, help="pjsua2 log file (SIP messages included)")
    parser.add_argument("--no-auto-ringing", dest="auto_ringing", action="store_false")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    # Keep the real stdout for the protocol; anything the C library prints goes to stderr.
    protocol = Protocol(os.dup(1))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    app = PhoneApp(args, protocol)
    try:
        app.start()
    except pj.Error as error:
        protocol.event("fatal", error=f"{error.title}: {error.reason}")
        return 1
    protocol.event("ready", sip_port=args.sip_port, rtp_port=args.rtp_port)
    try:
        app.run(sys.stdin.fileno())
    finally:
        app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
