"""Spoken prompts, made once with espeak-ng and kept as 8 kHz mono WAV for the workers.

Prompts are text in both languages; the file name carries a hash of the text and
voice, so editing a text makes a new file and a restart never re-speaks the rest.
The workers' bridge runs at 8 kHz: resampling once here (ffmpeg) spares every call.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import structlog

from media.audio import write_tone_wav

log = structlog.get_logger("voip.prompts")

VOICES = {"zh": "cmn", "en": "en"}
BEEP_HZ = 1000.0

PROMPTS: dict[str, dict[str, str]] = {
    "voicemail_greeting": {
        "en": "Please leave a message after the tone.",
        "zh": "请在提示音后留言。",
    },
    "forwarding_on": {"en": "Call forwarding is on.", "zh": "呼叫转移已开启。"},
    "forwarding_off": {"en": "Call forwarding is off.", "zh": "呼叫转移已取消。"},
    "dnd_on": {"en": "Do not disturb is on.", "zh": "免打扰已开启。"},
    "dnd_off": {"en": "Do not disturb is off.", "zh": "免打扰已取消。"},
    "enter_pin": {
        "en": "Please enter your mailbox PIN, then press hash.",
        "zh": "请输入语音信箱密码，以井号键结束。",
    },
    "wrong_pin": {"en": "Wrong PIN. Goodbye.", "zh": "密码错误，再见。"},
    "no_pin": {
        "en": "This mailbox has no PIN yet. Please set one in the console.",
        "zh": "该语音信箱尚未设置密码，请在管理台设置。",
    },
    "no_messages": {"en": "You have no messages. Goodbye.", "zh": "您没有留言，再见。"},
    "message_menu": {
        "en": "Press 7 to delete this message, or 9 for the next one.",
        "zh": "删除本条留言请按7，收听下一条请按9。",
    },
    "message_deleted": {"en": "Message deleted.", "zh": "留言已删除。"},
    "goodbye": {"en": "Goodbye.", "zh": "再见。"},
}


class Prompts:
    """Paths of the prompt files by (name, language); ``beep`` is a plain tone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[tuple[str, str], Path] = {}
        self.beep = folder / "beep.wav"
        self._lock = asyncio.Lock()

    async def get(self, name: str, language: str) -> Path:
        """The prompt's file, spoken now if it was not yet (a fraction of a second)."""
        texts = PROMPTS[name]
        language = language if language in texts else "en"
        key = (name, language)
        if key not in self.files:
            async with self._lock:
                if key not in self.files:
                    self.files[key] = await self.speak(texts[language], language)
        return self.files[key]

    async def prepare(self, names: tuple[str, ...] = ("voicemail_greeting",)) -> None:
        """Make the beep and the prompts callers hear first; the rest come on demand."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.beep.exists():
            write_tone_wav(self.beep, BEEP_HZ, 0.4)
        for name in names:
            for language in PROMPTS[name]:
                await self.get(name, language)

    async def speak(self, text: str, language: str) -> Path:
        voice = VOICES.get(language, "en")
        digest = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:16]
        target = self.folder / f"tts-{language}-{digest}.wav"
        if target.exists():
            return target
        raw = target.with_suffix(".raw.wav")
        await _run("espeak-ng", "-v", voice, "-s", "165", "-w", str(raw), text)
        partial = target.with_suffix(".part.wav")
        await _run(
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw),
            "-ac", "1", "-ar", "8000", "-sample_fmt", "s16", str(partial),
        )  # fmt: skip
        raw.unlink(missing_ok=True)
        partial.replace(target)  # whole or absent: a crash leaves no half prompt
        return target


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {stderr.decode()[:300]}")
