"""HLS (RFC 8216) playlists and the rendition ladder, sans-I/O.

Plain data in, text out (and back): no files, no processes, no clock, so every
rule here is tested without ffmpeg. The transcoder (:mod:`media.ffmpeg`) writes
the media playlists; this module plans the ladder, writes the master playlist
from what was actually produced, and reads playlists back to check them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MASTER_NAME = "master.m3u8"
MEDIA_NAME = "index.m3u8"

PLAYLIST_MIME = "application/vnd.apple.mpegurl"
MIME_TYPES = {
    ".m3u8": PLAYLIST_MIME,
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".json": "application/json",
}

# Video bitrate per rung height (kbit/s); between rungs the next one up is used.
VIDEO_KBPS = {1080: 5000, 720: 2800, 480: 1400, 360: 800, 240: 400, 144: 200}
AUDIO_KBPS = 128
RADIO_AUDIO_KBPS = 96
# H.264 High profile level 3.1 and AAC-LC, as advertised in the master playlist.
VIDEO_CODEC = "avc1.64001f"
AUDIO_CODEC = "mp4a.40.2"


class PlaylistError(ValueError):
    """A playlist that does not follow RFC 8216."""


@dataclass(frozen=True)
class Rung:
    """One video rendition to produce: its frame height (width follows the aspect)."""

    height: int
    video_kbps: int

    @property
    def name(self) -> str:
        return f"{self.height}p"


def even(value: float) -> int:
    """H.264 4:2:0 needs even dimensions; rounding down never exceeds the source."""
    return max(2, int(value) // 2 * 2)


def plan_ladder(source_height: int, heights: list[int]) -> list[Rung]:
    """The rungs not above the source (upscaling only wastes bits), best first.

    A source smaller than every rung still gets one rendition at its own height.
    """
    if source_height <= 0:
        raise ValueError("source height must be positive")
    chosen = sorted({h for h in heights if h <= source_height}, reverse=True)
    if not chosen:
        chosen = [even(source_height)]
    return [Rung(h, _kbps_for(h)) for h in chosen]


def _kbps_for(height: int) -> int:
    for rung_height in sorted(VIDEO_KBPS):
        if height <= rung_height:
            return VIDEO_KBPS[rung_height]
    return VIDEO_KBPS[max(VIDEO_KBPS)]


def gop_frames(frame_rate: float, segment_seconds: int) -> int:
    """Frames per GOP so that every segment starts on a key frame."""
    if frame_rate <= 0:
        raise ValueError("frame rate must be positive")
    return max(1, round(frame_rate * segment_seconds))


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float


@dataclass
class MediaPlaylist:
    target_duration: int
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False
    playlist_type: str | None = None
    version: int = 3

    @property
    def duration(self) -> float:
        return sum(segment.duration for segment in self.segments)

    def render(self) -> str:
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{self.version}"]
        lines.append(f"#EXT-X-TARGETDURATION:{self.target_duration}")
        lines.append("#EXT-X-MEDIA-SEQUENCE:0")
        if self.playlist_type:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self.playlist_type}")
        for segment in self.segments:
            lines.append(f"#EXTINF:{segment.duration:.6f},")
            lines.append(segment.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    codecs: str
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    average_bandwidth: int | None = None


@dataclass
class MasterPlaylist:
    variants: list[Variant] = field(default_factory=list)
    independent_segments: bool = True

    def render(self) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")

        # Best first (picture size, then bit rate): players that ignore the ladder
        # start at the top, and the order does not depend on measured sizes.
        def rank(variant: Variant) -> tuple[int, int]:
            height = variant.resolution[1] if variant.resolution else 0
            return (-height, -variant.bandwidth)

        for variant in sorted(self.variants, key=rank):
            attributes = [f"BANDWIDTH={variant.bandwidth}"]
            if variant.average_bandwidth:
                attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
            if variant.resolution:
                attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
            if variant.frame_rate:
                attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
            attributes.append(f'CODECS="{variant.codecs}"')
            lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
            lines.append(variant.uri)
        return "\n".join(lines) + "\n"


def _attributes(text: str) -> dict[str, str]:
    """Parse an attribute list (RFC 8216 4.2): commas inside quotes do not split."""
    result: dict[str, str] = {}
    key, value, quoted, reading_key = "", "", False, True
    for char in text + ",":
        if reading_key:
            if char == "=":
                reading_key = False
            elif char != ",":
                key += char
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            result[key.strip()] = value
            key, value, reading_key = "", "", True
        else:
            value += char
    return result


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("a playlist starts with #EXTM3U")
    return lines


def parse_media(text: str) -> MediaPlaylist:
    lines = _lines(text)
    target: int | None = None
    playlist = MediaPlaylist(target_duration=0)
    pending: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-VERSION:"):
            playlist.version = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PLAYLIST-TYPE:"):
            playlist.playlist_type = line.split(":", 1)[1]
        elif line.startswith("#EXTINF:"):
            try:
                pending = float(line.split(":", 1)[1].split(",", 1)[0])
            except ValueError:
                raise PlaylistError(f"bad #EXTINF duration: {line}") from None
        elif line == "#EXT-X-ENDLIST":
            playlist.ended = True
        elif line.startswith("#EXT-X-STREAM-INF"):
            raise PlaylistError("this is a master playlist, not a media playlist")
        elif not line.startswith("#"):
            if pending is None:
                raise PlaylistError(f"segment {line} has no #EXTINF")
            playlist.segments.append(Segment(line, pending))
            pending = None
    if target is None:
        raise PlaylistError("#EXT-X-TARGETDURATION is required")
    playlist.target_duration = target
    for segment in playlist.segments:
        # RFC 8216 4.3.3.1: each EXTINF, rounded, must not exceed the target duration.
        if math.floor(segment.duration + 0.5) > target:
            raise PlaylistError(f"segment {segment.uri} is longer than the target duration")
    return playlist


def parse_master(text: str) -> MasterPlaylist:
    lines = _lines(text)
    master = MasterPlaylist(independent_segments="#EXT-X-INDEPENDENT-SEGMENTS" in lines)
    pending: dict[str, str] | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attributes(line.split(":", 1)[1])
        elif line.startswith("#EXTINF"):
            raise PlaylistError("this is a media playlist, not a master playlist")
        elif not line.startswith("#") and pending is not None:
            resolution = None
            if "RESOLUTION" in pending:
                width, height = pending["RESOLUTION"].lower().split("x")
                resolution = (int(width), int(height))
            if "BANDWIDTH" not in pending:
                raise PlaylistError(f"variant {line} has no BANDWIDTH")
            master.variants.append(
                Variant(
                    uri=line,
                    bandwidth=int(pending["BANDWIDTH"]),
                    codecs=pending.get("CODECS", ""),
                    resolution=resolution,
                    frame_rate=float(pending["FRAME-RATE"]) if "FRAME-RATE" in pending else None,
                    average_bandwidth=int(pending["AVERAGE-BANDWIDTH"])
                    if "AVERAGE-BANDWIDTH" in pending
                    else None,
                )
            )
            pending = None
    if not master.variants:
        raise PlaylistError("a master playlist lists at least one variant")
    return master


def measured_bandwidth(segment_sizes: list[int], playlist: MediaPlaylist) -> tuple[int, int]:
    """(peak, average) bits per second of a rendition, from its segments' sizes.

    RFC 8216 4.3.4.2: BANDWIDTH is the peak segment bit rate, AVERAGE-BANDWIDTH
    the whole rendition's.
    """
    if len(segment_sizes) != len(playlist.segments) or not segment_sizes:
        raise ValueError("one size per segment is needed")
    peak = max(
        size * 8 / max(segment.duration, 0.001)
        for size, segment in zip(segment_sizes, playlist.segments, strict=True)
    )
    average = sum(segment_sizes) * 8 / max(playlist.duration, 0.001)
    return math.ceil(peak), math.ceil(average)


def mime_type(name: str) -> str:
    dot = name.rfind(".")
    return MIME_TYPES.get(name[dot:].lower() if dot >= 0 else "", "application/octet-stream")
