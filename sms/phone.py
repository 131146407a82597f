"""Mobile numbers to E.164 (sans-I/O).

The city's staff type numbers the way they read them: ``138 0013 8000``,
``+86-138-0013-8000``, ``0086 13800138000``. Everything is stored as E.164 so a
reply from the provider (always E.164) finds its contact.
"""

from __future__ import annotations

import re

DEFAULT_COUNTRY_CODE = "86"

_SEPARATORS = re.compile(r"[\s\-().\u3000]")
_CHINESE_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class InvalidNumber(ValueError):
    """A number that cannot be turned into an E.164 mobile number; says why."""


def normalise_mobile(raw: str, default_country_code: str = DEFAULT_COUNTRY_CODE) -> str:
    """Return the E.164 form of ``raw`` or raise :class:`InvalidNumber`.

    An 11-digit number starting 13-19 is a Chinese mobile (+86). Other numbers must
    carry their country code (``+`` or ``00``): guessing one would text a stranger.
    """
    text = _SEPARATORS.sub("", raw.strip())
    if not text:
        raise InvalidNumber("mobile number is empty")
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        if not text[1:].isdigit():
            raise InvalidNumber(f"{raw!r} has characters other than digits")
        number = text
    elif not text.isdigit():
        raise InvalidNumber(f"{raw!r} has characters other than digits")
    elif _CHINESE_MOBILE.match(text):
        number = f"+{default_country_code}{text}"
    elif text.startswith("86") and _CHINESE_MOBILE.match(text[2:]):
        number = f"+{text}"
    else:
        raise InvalidNumber(
            f"{raw!r} is not an 11-digit mobile number; give other countries' numbers with +"
        )
    if not _E164.match(number):
        raise InvalidNumber(f"{raw!r} is not a valid international number")
    if number.startswith("+86") and not _CHINESE_MOBILE.match(number[3:]):
        raise InvalidNumber(f"{raw!r} is not a Chinese mobile number (1xx xxxx xxxx)")
    return number
