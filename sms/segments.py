"""SMS segmentation (sans-I/O): which encoding a text needs and how many parts it costs.

GSM 03.38 7-bit fits 160 characters in one message and 153 per part of a
concatenated one (the user data header takes the rest); characters of the
extension table (``{}[]~|^€\\`` and form feed) take two septets and are never split
across parts. Any other character (Chinese, emoji) forces UCS-2: 70 code units
alone, 67 per part, and a surrogate pair is never split.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class Encoding(enum.StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True)
class Segmentation:
    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    parts: tuple[str, ...]

    @property
    def segments(self) -> int:
        return len(self.parts)

    @property
    def per_part_limit(self) -> int:
        if self.segments <= 1:
            return GSM7_SINGLE if self.encoding is Encoding.GSM7 else UCS2_SINGLE
        return GSM7_PART if self.encoding is Encoding.GSM7 else UCS2_PART


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _cost(ch: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def segment(text: str) -> Segmentation:
    """Split ``text`` into the parts a handset receives."""
    encoding = Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2
    costs = [_cost(ch, encoding) for ch in text]
    units = sum(costs)
    single, part = (
        (GSM7_SINGLE, GSM7_PART) if encoding is Encoding.GSM7 else (UCS2_SINGLE, UCS2_PART)
    )
    if units <= single:
        return Segmentation(encoding, units, (text,) if text else ())
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch, cost in zip(text, costs, strict=True):
        # A two-unit character that does not fit starts the next part whole.
        if used + cost > part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += cost
    if current:
        parts.append("".join(current))
    return Segmentation(encoding, units, tuple(parts))


def estimated_cost(segments_per_message: int, recipients: int, price_per_segment: float) -> float:
    return round(segments_per_message * recipients * price_per_segment, 4)


def segments_for_length(units: int, encoding: Encoding) -> int:
    """Segments for ``units`` plain characters (no two-unit ones); for quick estimates."""
    single, part = (
        (GSM7_SINGLE, GSM7_PART) if encoding is Encoding.GSM7 else (UCS2_SINGLE, UCS2_PART)
    )
    if units == 0:
        return 0
    return 1 if units <= single else math.ceil(units / part)
