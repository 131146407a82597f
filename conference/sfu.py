"""A forwarding SFU on aiortc: encoded frames in, the same encoded frames out.

aiortc always decodes what it receives, and its sender only re-packetizes when a
track yields ``av.Packet`` instead of a frame. So each publisher's receiver is
given a passthrough in place of its decoder queue: the jitter buffer's
reassembled frames (VP8/H264/Opus) go to a :class:`PublishedStream`, which hands
them to the :class:`SlotTrack` of every subscriber showing that publisher; the
subscriber's sender packs them into RTP again without touching the picture.

What forwarding must do by itself (see ``../shared/notes/aiortc-sfu.md``):
keyframe requests (PLI/FIR) from subscribers are forwarded to the publisher,
rate-limited, and one is sent when a slot switches to a new source; slot queues
are bounded and, when one overflows, the slot skips to the next keyframe rather
than feeding the decoder a broken picture.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_CLOCK)
# Gap put between the last frame of one source and the first of the next in a slot,
# so the subscriber's jitter buffer sees a timeline that only moves forward.
SWITCH_STEP = {"video": VIDEO_CLOCK // 30, "audio": AUDIO_CLOCK // 50}


@dataclass(frozen=True)
class EncodedFrame:
    data: bytes
    timestamp: int  # RTP clock of the publisher, from 0
    keyframe: bool


def is_keyframe(mime: str, data: bytes) -> bool:
    """Whether a reassembled frame starts a picture a decoder can begin with."""
    if not data:
        return False
    mime = mime.lower()
    if mime == "video/vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame.
        return data[0] & 0x01 == 0
    if mime == "video/h264":
        # aiortc depayloads H264 to Annex B: look for an IDR slice or an SPS.
        index = data.find(b"\x00\x00\x01")
        while index != -1 and index + 3 < len(data):
            if data[index + 3] & 0x1F in (5, 7):
                return True
            index = data.find(b"\x00\x00\x01", index + 3)
        return False
    return True  # audio: every frame stands alone


class KeyframeRequester:
    """Asks a publisher for a keyframe at most once per ``interval``; none is lost.

    A request inside the interval is deferred to its end, so a burst of PLIs from
    ten subscribers costs the publisher one keyframe, and the last of them is
    still answered.
    """

    def __init__(self, send: Callable[[], None], interval: float) -> None:
        self._send = send
        self.interval = interval
        self._last = -1e9
        self._pending: asyncio.TimerHandle | None = None
        self.sent = 0

    def request(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._pending is not None:
            return
        wait = self._last + self.interval - now
        if wait <= 0:
            self._fire()
        else:
            self._pending = loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = asyncio.get_running_loop().time()
        self.sent += 1
        self._send()

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class FrameSink(Protocol):
    """What a stream fans out to: a subscriber's slot, or the meeting recorder."""

    def push(self, frame: EncodedFrame) -> None: ...

    def switch(self, source: PublishedStream | None) -> None: ...


class PublishedStream:
    """One kind (audio or video) of one publisher, fanned out to the slots showing it."""

    def __init__(self, kind: str, owner: str) -> None:
        self.kind = kind
        self.owner = owner
        self.mime = ""
        self.ssrc: int | None = None
        self.muted = False  # audio muted by the chair: nothing is forwarded
        self.subscribers: set[FrameSink] = set()
        self.frames_in = 0
        self.keyframes = KeyframeRequester(self._send_pli, 0.5)
        self._receiver: RTCRtpReceiver | None = None
        self._passthrough: _PassthroughQueue | None = None

    def on_frame(self, mime: str, data: bytes, timestamp: int) -> None:
        self.mime = mime
        self.frames_in += 1
        if self.muted:
            return
        frame = EncodedFrame(data, timestamp, is_keyframe(mime, data))
        for slot in tuple(self.subscribers):
            slot.push(frame)

    def request_keyframe(self) -> None:
        if self.kind == "video":
            self.keyframes.request()

    def _send_pli(self) -> None:
        receiver, ssrc = self._receiver, self.ssrc
        if receiver is None or ssrc is None:
            return
        task = asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def close(self) -> None:
        self.keyframes.cancel()
        for slot in tuple(self.subscribers):
            slot.switch(None)
        if self._passthrough is not None:
            # Release aiortc's parked decoder thread even if the receiver never stops.
            self._passthrough.put(None)


class _PassthroughQueue:
    """Stands in for the receiver's decoder queue: frames go to the stream, not a decoder.

    aiortc still starts its decoder thread on it; ``get`` parks that thread until
    the receiver stops (it puts ``None``), so the thread never decodes anything.
    """

    def __init__(self, stream: PublishedStream, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._stopped = threading.Event()

    def put(self, item: Any) -> None:
        if item is None:
            self._stopped.set()
            return
        codec, frame = item
        self._stream.on_frame(codec.mimeType, frame.data, frame.timestamp)

    def get(self) -> None:
        self._stopped.wait()
        return None


def attach_passthrough(
    receiver: RTCRtpReceiver,
    stream: PublishedStream,
    on_audio_level: Callable[[int], None] | None = None,
) -> None:
    """Make ``receiver`` hand encoded frames to ``stream``; call before negotiation ends."""
    loop = asyncio.get_running_loop()
    stream._passthrough = _PassthroughQueue(stream, loop)
    receiver._RTCRtpReceiver__decoder_queue = stream._passthrough  # type: ignore[attr-defined]
    stream._receiver = receiver
    original = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: Any, arrival_time_ms: int) -> None:
        stream.ssrc = packet.ssrc
        level = packet.extensions.audio_level
        if level is not None and on_audio_level is not None and not stream.muted:
            on_audio_level(level[1])
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


class SlotTrack(MediaStreamTrack):
    """What one subscriber receives in one slot: encoded frames of whichever source.

    The slot re-stamps frames so its timeline keeps moving forward across source
    switches, and holds at most ``capacity`` frames: when the subscriber falls that
    far behind, the queue is dropped and the slot waits for the next keyframe.
    """

    def __init__(self, kind: str, capacity: int) -> None:
        super().__init__()
        self.kind = kind
        self.capacity = capacity
        self.source: PublishedStream | None = None
        self.frames_out = 0
        self.overflows = 0
        self._queue: deque[EncodedFrame] = deque()
        self._ready = asyncio.Event()
        self._need_keyframe = kind == "video"
        self._offset: int | None = None
        self._last_out = 0
        self._time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE

    def switch(self, source: PublishedStream | None) -> None:
        if source is self.source:
            return
        if self.source is not None:
            self.source.subscribers.discard(self)
        self.source = source
        self._queue.clear()
        self._offset = None
        self._need_keyframe = self.kind == "video"
        if source is not None:
            source.subscribers.add(self)
            # A new viewer of a picture needs a keyframe now, not at the next GOP.
            source.request_keyframe()

    def request_keyframe(self) -> None:
        """The subscriber lost a picture (its PLI/FIR): ask the publisher."""
        if self.source is not None:
            self.source.request_keyframe()

    def push(self, frame: EncodedFrame) -> None:
        if self._need_keyframe:
            if not frame.keyframe:
                return
            self._need_keyframe = False
        if len(self._queue) >= self.capacity:
            self.overflows += 1
            self._queue.clear()
            if self.kind == "video":
                self._need_keyframe = not frame.keyframe
                if self._need_keyframe:
                    self.request_keyframe()
                    return
        if self._offset is None:
            step = SWITCH_STEP[self.kind] if self.frames_out else 0
            self._offset = self._last_out + step - frame.timestamp
        self._queue.append(frame)
        self._ready.set()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        packet = av.Packet(frame.data)
        pts = frame.timestamp + (self._offset or 0)
        self._last_out = pts
        packet.pts = pts
        packet.time_base = self._time_base
        self.frames_out += 1
        return packet

    def stop(self) -> None:
        self.switch(None)
        super().stop()
        self._ready.set()


def forward_keyframe_requests(sender: RTCRtpSender, slot: SlotTrack) -> None:
    """A subscriber's PLI/FIR reaches the sender, which cannot encode: pass it upstream."""
    sender._send_keyframe = slot.request_keyframe  # type: ignore[method-assign]


@dataclass
class SenderCheck:
    """Evidence, per video sender, that the SFU forwarded and never encoded."""

    packets_sent: int
    frames_forwarded: int
    encoder_opened: bool  # an encoder context exists only once a raw frame was encoded


async def video_sender_checks(pc: RTCPeerConnection) -> list[SenderCheck]:
    checks = []
    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        if transceiver.kind != "video" or not isinstance(sender.track, SlotTrack):
            continue
        stats = await sender.getStats()
        sent = sum(getattr(s, "packetsSent", 0) for s in stats.values() if s.type == "outbound-rtp")
        encoder = getattr(sender, "_RTCRtpSender__encoder", None)
        opened = encoder is not None and getattr(encoder, "codec", None) is not None
        checks.append(SenderCheck(sent, sender.track.frames_out, opened))
    return checks


def codec_preferences(kind: str, video_codec: str) -> list[RTCRtpCodecCapability]:
    """The one codec every publisher sends, so every subscriber can take it as is."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    if kind == "audio":
        return [c for c in codecs if c.mimeType.lower() == "audio/opus"]
    wanted = f"video/{video_codec}"
    chosen = [c for c in codecs if c.mimeType.lower() == wanted]
    if video_codec == "h264":
        # Constrained baseline, packetization-mode 1: what every browser decodes.
        chosen = [c for c in chosen if c.parameters.get("packetization-mode") == "1"][:1] or chosen
    return chosen + [c for c in codecs if c.mimeType.lower() == "video/rtx"]


@dataclass
class Peer:
    """One participant's peer connection: what it publishes and the slots it receives."""

    key: str
    pc: RTCPeerConnection
    audio: PublishedStream | None
    video: PublishedStream | None
    slots: list[tuple[SlotTrack, SlotTrack]] = field(default_factory=list)  # (audio, video)
    publish_mids: tuple[str, str] | None = None
    slot_mids: list[tuple[str, str]] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)  # what each slot shows (layout refs)
    closed: bool = False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in (self.audio, self.video):
            if stream is not None:
                stream.close()
        for audio, video in self.slots:
            audio.stop()
            video.stop()
        await self.pc.close()


async def open_peer(
    key: str,
    *,
    publishes: bool,
    slots: int,
    video_codec: str,
    queue_frames: int,
    keyframe_interval: float,
    on_audio_level: Callable[[int], None] | None = None,
) -> tuple[Peer, str]:
    """A peer connection with the server as offerer; returns it and the offer's SDP.

    The server offers so that it fixes the codec (the subscriber's sender must use
    the publisher's codec: nothing is transcoded). ``slots`` pairs of send-only
    transceivers carry the main picture and the active speakers; their sources
    change with the layout without renegotiation.
    """
    # One transport for every slot: with aiortc's default (balanced) bundling, the
    # second and later video transceivers keep a transport that never starts.
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    audio_stream = video_stream = None
    transceivers = []
    if publishes:
        audio_stream = PublishedStream("audio", key)
        video_stream = PublishedStream("video", key)
        video_stream.keyframes.interval = keyframe_interval
        for kind, stream in (("audio", audio_stream), ("video", video_stream)):
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(kind, video_codec))
            attach_passthrough(
                transceiver.receiver, stream, on_audio_level if kind == "audio" else None
            )
            transceivers.append(transceiver)
    peer = Peer(key, pc, audio_stream, video_stream)
    for _ in range(slots):
        pair = (SlotTrack("audio", queue_frames), SlotTrack("video", queue_frames))
        for track in pair:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(track.kind, video_codec))
            if track.kind == "video":
                forward_keyframe_requests(transceiver.sender, track)
            transceivers.append(transceiver)
        peer.slots.append(pair)
    peer.sources = [None] * slots
    # aiortc gathers every candidate inside setLocalDescription (no trickle ICE).
    await pc.setLocalDescription(await pc.createOffer())
    mids = [t.mid or "" for t in transceivers]
    if publishes:
        peer.publish_mids = (mids[0], mids[1])
        mids = mids[2:]
    peer.slot_mids = [(mids[2 * i], mids[2 * i + 1]) for i in range(slots)]
    return peer, pc.localDescription.sdp
