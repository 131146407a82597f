"""Media applications the workers run: what a caller hears on a feature number."""

from __future__ import annotations

from pathlib import Path

from media.audio import write_tone_wav

from .session import MediaApp, MediaSession

# The "milliwatt" test line of telephone exchanges: a steady 1004 Hz tone.
MILLIWATT_HZ = 1004.0


def prepare_prompts(folder: Path) -> dict[str, Path]:
    """The prompt files the applications play, made once (they are small)."""
    folder.mkdir(parents=True, exist_ok=True)
    milliwatt = folder / "milliwatt.wav"
    if not milliwatt.exists():
        write_tone_wav(milliwatt, MILLIWATT_HZ, 5.0)
    return {"milliwatt": milliwatt}


async def echo_test(session: MediaSession) -> None:
    """Whatever the caller says comes back: checks a phone's microphone and speaker."""
    await session.answer()
    await session.echo()
    await session.wait_end()


def milliwatt(prompts: dict[str, Path]) -> MediaApp:
    async def run(session: MediaSession) -> None:
        await session.answer()
        await session.play(prompts["milliwatt"], loop=True)
        await session.wait_end()

    return run
