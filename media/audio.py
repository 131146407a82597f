"""Mono 16-bit PCM WAV files, tone analysis and G.711 (µ-law / A-law) codecs.

Telephony audio is narrow: 8 kHz (G.711) or 16 kHz (wide-band) mono 16-bit PCM.
Everything here works on numpy ``int16`` arrays so the media workers can use the
same helpers on RTP payloads that the tests use on recorded files.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

SUPPORTED_RATES = (8000, 16000)
INT16_FULL_SCALE = 32768.0
# Below this level a recording holds no signal: G.711 idle noise sits near -70 dBFS,
# while a tone played at the default amplitude is above -20 dBFS.
SILENCE_DBFS = -50.0


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio: samples and their rate."""

    samples: Samples
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def tone_samples(
    frequency: float, seconds: float, sample_rate: int = 8000, amplitude: float = 0.5
) -> Samples:
    """A sine tone as int16 samples; ``amplitude`` is a fraction of full scale."""
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"sample rate must be one of {SUPPORTED_RATES}, not {sample_rate}")
    if not 0 < frequency < sample_rate / 2:
        raise ValueError(f"frequency {frequency} Hz is outside (0, {sample_rate // 2}) Hz")
    if not 0 <= amplitude <= 1:
        raise ValueError("amplitude must be between 0 and 1")
    count = round(seconds * sample_rate)
    time = np.arange(count, dtype=np.float64) / sample_rate
    wave_ = amplitude * (INT16_FULL_SCALE - 1) * np.sin(2 * np.pi * frequency * time)
    return wave_.astype(np.int16)


def write_wav(path: Path | str, samples: Samples, sample_rate: int = 8000) -> Path:
    """Write mono 16-bit PCM."""
    path = Path(path)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def write_tone_wav(
    path: Path | str,
    frequency: float,
    seconds: float,
    sample_rate: int = 8000,
    amplitude: float = 0.5,
) -> Path:
    """Write a mono 16-bit PCM WAV holding a sine tone."""
    return write_wav(path, tone_samples(frequency, seconds, sample_rate, amplitude), sample_rate)


def read_wav(path: Path | str) -> Audio:
    """Read a 16-bit PCM WAV; several channels are mixed down to mono."""
    with wave.open(str(path), "rb") as source:
        if source.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM is supported")
        channels = source.getnchannels()
        rate = source.getframerate()
        raw = source.readframes(source.getnframes())
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return Audio(samples=samples, sample_rate=rate)


def _as_audio(source: Path | str | Audio) -> Audio:
    return source if isinstance(source, Audio) else read_wav(source)


def dominant_frequency(source: Path | str | Audio, skip_seconds: float = 0.0) -> float:
    """The strongest frequency (Hz) of a recording, DC excluded.

    A Hann window keeps spectral leakage from a non-integer number of periods from
    moving the peak; the peak is refined by parabolic interpolation on the log
    magnitude, which makes short recordings accurate to well under a bin.
    ``skip_seconds`` drops the start (call set-up silence, jitter-buffer warm-up).
    """
    audio = _as_audio(source)
    samples = audio.samples[round(skip_seconds * audio.sample_rate) :].astype(np.float64)
    if len(samples) < 16:
        raise ValueError("too few samples to analyse")
    samples -= samples.mean()
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0  # DC: whatever offset is left after removing the mean
    peak = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < peak < len(spectrum) - 1:
        left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = left - 2 * centre + right
        if denominator != 0:
            offset = 0.5 * (left - right) / denominator
    return float((peak + offset) * audio.sample_rate / len(samples))


def rms_dbfs(source: Path | str | Audio) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    audio = _as_audio(source)
    if len(audio.samples) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean((audio.samples.astype(np.float64) / INT16_FULL_SCALE) ** 2)))
    return float("-inf") if rms == 0 else 20 * float(np.log10(rms))


def is_silent(source: Path | str | Audio, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    return rms_dbfs(source) < threshold_dbfs


# --- G.711 (ITU-T) -----------------------------------------------------------------
# Vectorised versions of the reference algorithms (Sun's g711.c): a sign bit, a
# 3-bit segment (exponent) and a 4-bit step inside it, bits inverted on the wire.

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # on 14-bit magnitudes
# Upper ends of the eight segments, for µ-law (14-bit input) and A-law (13-bit input).
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _segment(values: npt.NDArray[np.int32], ends: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    """Index of the first segment whose upper end is >= value (8 when above all)."""
    return np.searchsorted(ends, values, side="left").astype(np.int32)


def ulaw_encode(samples: Samples) -> bytes:
    """16-bit linear PCM to G.711 µ-law (PCMU), one byte per sample."""
    pcm = np.asarray(samples, dtype=np.int32) >> 2  # µ-law works on 14-bit values
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(negative, -pcm, pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(magnitude, _ULAW_SEGMENT_ENDS)
    code = np.where(
        segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F)
    )
    return (code ^ mask).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> Samples:
    """G.711 µ-law bytes to 16-bit linear PCM."""
    code = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    segment = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + _ULAW_BIAS) << segment) - _ULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def alaw_encode(samples: Samples) -> bytes:
    """16-bit linear PCM to G.711 A-law (PCMA), one byte per sample."""
    pcm = np.asarray(samples, dtype=np.int32) >> 3  # A-law works on 13-bit values
    sign = np.where(pcm >= 0, 0x80, 0x00)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = _segment(magnitude, _ALAW_SEGMENT_ENDS)
    shift = np.where(segment < 2, 1, np.minimum(segment, 7))
    step = (magnitude >> shift) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | step)
    return ((code | sign) ^ 0x55).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> Samples:
    """G.711 A-law bytes to 16-bit linear PCM."""
    code = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    step = (code & 0x0F) << 4
    magnitude = np.where(
        segment == 0,
        step + 8,
        np.where(segment == 1, step + 0x108, (step + 0x108) << np.maximum(segment - 1, 0)),
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)
