"""WAV tones, level measurement and G.711 against the ITU reference behaviour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from media.audio import (
    Samples,
    alaw_decode,
    alaw_encode,
    dominant_frequency,
    is_silent,
    read_wav,
    rms_dbfs,
    tone_samples,
    ulaw_decode,
    ulaw_encode,
    write_tone_wav,
    write_wav,
)


@pytest.mark.parametrize(("frequency", "rate"), [(440.0, 8000), (1000.0, 8000), (3150.0, 16000)])
def test_tone_wav_round_trips_to_its_dominant_frequency(
    tmp_path: Path, frequency: float, rate: int
) -> None:
    path = write_tone_wav(tmp_path / "tone.wav", frequency, 0.5, sample_rate=rate)
    audio = read_wav(path)
    assert audio.sample_rate == rate
    assert len(audio.samples) == rate // 2
    assert dominant_frequency(path) == pytest.approx(frequency, abs=2.0)


def test_dominant_frequency_ignores_a_dc_offset(tmp_path: Path) -> None:
    samples = (tone_samples(300.0, 1.0, amplitude=0.1).astype(np.int32) + 8000).astype(np.int16)
    path = write_wav(tmp_path / "offset.wav", samples)
    assert dominant_frequency(path) == pytest.approx(300.0, abs=2.0)


def test_level_of_a_tone_and_of_silence(tmp_path: Path) -> None:
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 0.2, amplitude=0.5)
    # A sine's RMS is its peak / sqrt(2): 0.5 of full scale is about -9 dBFS.
    assert rms_dbfs(tone) == pytest.approx(-9.03, abs=0.1)
    assert not is_silent(tone)
    silence = write_wav(tmp_path / "silence.wav", np.zeros(800, dtype=np.int16))
    assert rms_dbfs(silence) == float("-inf")
    assert is_silent(silence)


def test_invalid_tone_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        tone_samples(440.0, 1.0, sample_rate=44100)
    with pytest.raises(ValueError, match="outside"):
        tone_samples(5000.0, 1.0, sample_rate=8000)


# Reference code words as produced by the CCITT reference code (Sun's g711.c, CPython's audioop).
@pytest.mark.parametrize(
    ("linear", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
    ],
)
def test_g711_reference_code_words(linear: int, ulaw: int, alaw: int) -> None:
    samples = np.array([linear], dtype=np.int16)
    assert ulaw_encode(samples) == bytes([ulaw])
    assert alaw_encode(samples) == bytes([alaw])


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_g711_round_trip_keeps_every_code_word_and_bounds_the_error(
    encode: Callable[[Samples], bytes], decode: Callable[[bytes], Samples]
) -> None:
    codes = bytes(range(256))
    # Decoding then encoding gives back every one of the 256 code words...
    assert encode(decode(codes)) == codes or _same_except_negative_zero(
        encode(decode(codes)), codes
    )
    # ...and a full-range ramp comes back within the quantisation step of its segment.
    ramp = np.arange(-32768, 32768, 7, dtype=np.int16)
    decoded = decode(encode(ramp)).astype(np.int32)
    error = np.abs(decoded - ramp.astype(np.int32))
    assert np.all(error <= np.maximum(np.abs(ramp.astype(np.int32)) // 16, 16))


def test_g711_tone_survives_encoding(tmp_path: Path) -> None:
    tone = tone_samples(440.0, 0.5)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        path = write_wav(tmp_path / "g711.wav", decode(encode(tone)))
        assert dominant_frequency(path) == pytest.approx(440.0, abs=2.0)


def _same_except_negative_zero(got: bytes, expected: bytes) -> bool:
    # µ-law has two zeros (0x7F and 0xFF): both decode to 0, which encodes to 0xFF.
    return all(g == e or {g, e} == {0x7F, 0xFF} for g, e in zip(got, expected, strict=True))
