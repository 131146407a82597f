"""What happens to a call for an extension, step by step: sans-I/O.

An extension's settings (:class:`CallFeatures`) give the first step of a call for it
and the step after its phones failed: busy (486/600/603) or no answer (the ring time
ran out: 408; the phone said 480). No database, no clock, no network.

- do not disturb: straight to voicemail when the mailbox is on, else busy;
- forward always: the call goes to that number instead, the phone never rings;
- otherwise the phones ring, for ``no_answer_seconds`` when something follows no
  answer (forward on no answer, or voicemail), then:
  busy -> forward on busy, else voicemail; no answer -> forward on no answer, else
  voicemail; any other failure is the caller's to hear.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import CallFeatures

BUSY_STATUSES = frozenset({486, 600, 603})
NO_ANSWER_STATUSES = frozenset({408, 480, 487})
# A forwarding chain longer than this is a configuration loop (1001 -> 1002 -> 1001).
MAX_FORWARDS = 5


@dataclass(frozen=True)
class RingPhones:
    number: str
    ring_seconds: float | None  # None: the exchange's default ring time


@dataclass(frozen=True)
class ForwardTo:
    number: str
    reason: str  # always, busy, no_answer (kept in the log)


@dataclass(frozen=True)
class ToVoicemail:
    mailbox: str


@dataclass(frozen=True)
class Busy:
    reason: str


Step = RingPhones | ForwardTo | ToVoicemail | Busy


def first_step(number: str, features: CallFeatures) -> Step:
    if features.dnd:
        return ToVoicemail(number) if features.voicemail else Busy("do not disturb")
    if features.forward_always:
        return ForwardTo(features.forward_always, "always")
    follows = bool(features.forward_no_answer) or features.voicemail
    return RingPhones(number, float(features.no_answer_seconds) if follows else None)


def after_failure(number: str, features: CallFeatures, status: int) -> Step | None:
    """The step after the phones failed with ``status``; None: the caller hears it."""
    if status in BUSY_STATUSES:
        if features.forward_busy:
            return ForwardTo(features.forward_busy, "busy")
    elif status in NO_ANSWER_STATUSES:
        if features.forward_no_answer:
            return ForwardTo(features.forward_no_answer, "no_answer")
    else:
        return None
    return ToVoicemail(number) if features.voicemail else None
