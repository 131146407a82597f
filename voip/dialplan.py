"""The dial plan: what a dialled number means, and whether this caller may dial it.

Sans-I/O: a :class:`DialPlan` is built from rows of ``voip_dial_rules`` (or by
hand in tests) and :meth:`DialPlan.decide` turns a dialled string and the caller's
class of service into one decision. No database, no clock, no network.

Numbering (defaults seeded by migration ``voip_0003``):

- extensions: ranges of equal-length numbers (``1000``-``8999``);
- department short codes: three digits ringing a department's main extension;
- feature codes: ``*97`` voicemail, ``*72<number>`` forward on, ``*73`` off,
  ``*78`` do-not-disturb on, ``*79`` off, ``*8[<ext>]`` pickup, ``*43`` echo test;
- emergency numbers ``110 119 120 122``, with or without the outbound prefix,
  always allowed whatever the class of service;
- the outbound prefix ``0`` then a PSTN number, classified as local (no area
  code, or our own), national (another area code, or a mobile), international
  (``00``); the caller's class of service must reach that class (403 otherwise).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from voip.models import ClassOfService

# How far each class of service reaches, in order.
COS_RANK = {
    ClassOfService.INTERNAL: 0,
    ClassOfService.LOCAL: 1,
    ClassOfService.NATIONAL: 2,
    ClassOfService.INTERNATIONAL: 3,
}

DIALLABLE = re.compile(r"^[0-9*#+]{1,32}$")
MIN_PSTN_DIGITS = 3


class Destination(enum.StrEnum):
    """The class of a destination, for class of service and for rating."""

    INTERNAL = "internal"
    LOCAL = "local"
    NATIONAL = "national"
    INTERNATIONAL = "international"
    EMERGENCY = "emergency"


# The class of service a destination needs (emergency needs none).
REQUIRED_COS = {
    Destination.INTERNAL: ClassOfService.INTERNAL,
    Destination.LOCAL: ClassOfService.LOCAL,
    Destination.NATIONAL: ClassOfService.NATIONAL,
    Destination.INTERNATIONAL: ClassOfService.INTERNATIONAL,
    Destination.EMERGENCY: ClassOfService.INTERNAL,
}


class FeatureAction(enum.StrEnum):
    VOICEMAIL = "voicemail"
    FORWARD_ON = "forward_on"
    FORWARD_OFF = "forward_off"
    DND_ON = "dnd_on"
    DND_OFF = "dnd_off"
    PICKUP = "pickup"
    ECHO = "echo"
    TEST_TONE = "test_tone"


class RuleKind(enum.StrEnum):
    """The kinds of rows in ``voip_dial_rules``."""

    EXTENSIONS = "extensions"  # pattern "1000-8999"
    SHORT_CODE = "short_code"  # pattern "800", target: an extension number
    FEATURE = "feature"  # pattern "*72", target: a FeatureAction
    OUTBOUND_PREFIX = "outbound_prefix"  # pattern "0"
    EMERGENCY = "emergency"  # pattern "110"
    AREA_CODE = "area_code"  # pattern "010": our own area, dialled as local


# -- decisions --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToExtension:
    number: str
    via_short_code: str | None = None


@dataclass(frozen=True)
class ToFeature:
    action: FeatureAction
    code: str
    argument: str = ""  # the digits after the code (a forwarding target, a pickup extension)


@dataclass(frozen=True)
class ToPstn:
    """Out through the trunk: ``number`` as the carrier wants it (prefix removed)."""

    number: str
    destination: Destination


@dataclass(frozen=True)
class Refused:
    status: int  # 403 not allowed, 404 no such number, 484 incomplete
    reason: str
    # An attempt at an outside number (after the outbound prefix): its CDR is outbound.
    outbound: bool = False


Decision = ToExtension | ToFeature | ToPstn | Refused


def cos_allows(cos: ClassOfService, destination: Destination) -> bool:
    return COS_RANK[cos] >= COS_RANK[REQUIRED_COS[destination]]


def effective_cos(extension: ClassOfService, department: ClassOfService | None) -> ClassOfService:
    """An extension reaches no further than its department allows."""
    if department is None:
        return extension
    return min(extension, department, key=COS_RANK.__getitem__)


@dataclass(frozen=True)
class ExtensionRange:
    first: str
    last: str

    @classmethod
    def parse(cls, pattern: str) -> ExtensionRange:
        first, _, last = pattern.partition("-")
        last = last or first
        if not (first.isdigit() and last.isdigit()) or len(first) != len(last) or first > last:
            raise ValueError(f"extension range {pattern!r}: two equal-length numbers, low-high")
        return cls(first, last)

    def __contains__(self, number: object) -> bool:
        return (
            isinstance(number, str)
            and number.isdigit()
            and len(number) == len(self.first)
            and self.first <= number <= self.last
        )


@dataclass
class DialPlan:
    extension_ranges: list[ExtensionRange] = field(default_factory=list)
    short_codes: dict[str, str] = field(default_factory=dict)
    features: dict[str, FeatureAction] = field(default_factory=dict)
    outbound_prefix: str = "0"
    emergency: frozenset[str] = frozenset({"110", "119", "120", "122"})
    area_codes: frozenset[str] = frozenset()

    @classmethod
    def default(cls) -> DialPlan:
        return cls.from_rules(DEFAULT_RULES)

    @classmethod
    def from_rules(cls, rules: Iterable[tuple[str, str, str]]) -> DialPlan:
        """Build from (kind, pattern, target) rows; a bad row raises ValueError naming it."""
        plan = cls(emergency=frozenset())
        emergency: set[str] = set()
        areas: set[str] = set()
        for kind_text, pattern, target in rules:
            kind = RuleKind(kind_text)
            if kind is RuleKind.EXTENSIONS:
                plan.extension_ranges.append(ExtensionRange.parse(pattern))
            elif kind is RuleKind.SHORT_CODE:
                if not (pattern.isdigit() and target.isdigit()):
                    raise ValueError(f"short code {pattern!r} -> {target!r}: digits only")
                plan.short_codes[pattern] = target
            elif kind is RuleKind.FEATURE:
                if not re.fullmatch(r"\*[0-9]{1,3}", pattern):
                    raise ValueError(f"feature code {pattern!r}: a star and 1-3 digits")
                plan.features[pattern] = FeatureAction(target)
            elif kind is RuleKind.OUTBOUND_PREFIX:
                if not re.fullmatch(r"[0-9]{0,2}", pattern):
                    raise ValueError(f"outbound prefix {pattern!r}: up to two digits")
                plan.outbound_prefix = pattern
            elif kind is RuleKind.EMERGENCY:
                if not pattern.isdigit():
                    raise ValueError(f"emergency number {pattern!r}: digits only")
                emergency.add(pattern)
            elif kind is RuleKind.AREA_CODE:
                if not re.fullmatch(r"0[1-9][0-9]{1,2}", pattern):
                    raise ValueError(f"area code {pattern!r}: 0 then 2-3 digits")
                areas.add(pattern)
        plan.emergency = frozenset(emergency)
        plan.area_codes = frozenset(areas)
        return plan

    def is_extension(self, number: str) -> bool:
        return any(number in extension_range for extension_range in self.extension_ranges)

    def decide(self, dialled: str, cos: ClassOfService) -> Decision:
        if not DIALLABLE.fullmatch(dialled):
            return Refused(404, "not a dialable number")
        if dialled in self.emergency:
            return ToPstn(dialled, Destination.EMERGENCY)
        if dialled.startswith("*"):
            return self._feature(dialled)
        if self.is_extension(dialled):
            return ToExtension(dialled)
        if dialled in self.short_codes:
            return ToExtension(self.short_codes[dialled], via_short_code=dialled)
        prefix = self.outbound_prefix
        if dialled.startswith(prefix) and len(dialled) > len(prefix):
            return self._outbound(dialled[len(prefix) :], cos)
        return Refused(404, "no such number")

    def _feature(self, dialled: str) -> Decision:
        # The longest code that starts the string: "*8" and "*80" may both exist.
        for length in range(min(len(dialled), 4), 1, -1):
            action = self.features.get(dialled[:length])
            if action is not None:
                argument = dialled[length:]
                if argument and not argument.isdigit():
                    return Refused(404, "a feature code takes digits only")
                if action is FeatureAction.FORWARD_ON and not argument:
                    return Refused(484, "forwarding needs a number after the code")
                return ToFeature(action, dialled[:length], argument)
        return Refused(404, "no such feature code")

    def classify(self, number: str) -> Destination:
        """The class of a PSTN number as dialled after the outbound prefix."""
        if number in self.emergency:
            return Destination.EMERGENCY
        if number.startswith("00") or number.startswith("+"):
            return Destination.INTERNATIONAL
        if number.startswith("0"):
            if any(number.startswith(area) for area in self.area_codes):
                return Destination.LOCAL
            return Destination.NATIONAL
        if len(number) == 11 and number.startswith("1") and number[1] in "3456789":
            return Destination.NATIONAL  # a mobile: long-distance tariff from a desk line
        return Destination.LOCAL

    def _outbound(self, number: str, cos: ClassOfService) -> Decision:
        if not number.lstrip("+").isdigit() or len(number) < MIN_PSTN_DIGITS:
            return Refused(484, "incomplete number", outbound=True)
        destination = self.classify(number)
        if not cos_allows(cos, destination):
            reason = f"class of service {cos.value} does not allow {destination.value}"
            return Refused(403, reason, outbound=True)
        return ToPstn(number, destination)


DEFAULT_RULES: list[tuple[str, str, str]] = [
    (RuleKind.EXTENSIONS, "1000-8999", ""),
    (RuleKind.OUTBOUND_PREFIX, "0", ""),
    (RuleKind.AREA_CODE, "010", ""),
    *[(RuleKind.EMERGENCY, number, "") for number in ("110", "119", "120", "122")],
    (RuleKind.FEATURE, "*97", FeatureAction.VOICEMAIL),
    (RuleKind.FEATURE, "*72", FeatureAction.FORWARD_ON),
    (RuleKind.FEATURE, "*73", FeatureAction.FORWARD_OFF),
    (RuleKind.FEATURE, "*78", FeatureAction.DND_ON),
    (RuleKind.FEATURE, "*79", FeatureAction.DND_OFF),
    (RuleKind.FEATURE, "*8", FeatureAction.PICKUP),
    (RuleKind.FEATURE, "*43", FeatureAction.ECHO),
    (RuleKind.FEATURE, "*44", FeatureAction.TEST_TONE),
]
