"""The dial plan, sans-I/O: every kind of number against every class of service."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voip.dialplan import (
    DEFAULT_RULES,
    Destination,
    DialPlan,
    ExtensionRange,
    FeatureAction,
    Refused,
    RuleKind,
    ToExtension,
    ToFeature,
    ToPstn,
    cos_allows,
    effective_cos,
)
from voip.models import ClassOfService as Cos

PLAN = DialPlan.from_rules([*DEFAULT_RULES, (RuleKind.SHORT_CODE, "800", "1001")])
ALL_COS = list(Cos)


@pytest.mark.parametrize("cos", ALL_COS)
@pytest.mark.parametrize("number", ["1000", "1001", "4567", "8999"])
def test_extensions_are_internal_for_everyone(number: str, cos: Cos) -> None:
    assert PLAN.decide(number, cos) == ToExtension(number)


@pytest.mark.parametrize("number", ["0999", "9000", "100", "10000", "999"])
def test_numbers_outside_every_range_are_not_found(number: str) -> None:
    decision = PLAN.decide(number, Cos.INTERNATIONAL)
    if number.startswith("0"):
        assert isinstance(decision, ToPstn)  # "0" is the outbound prefix
    else:
        assert decision == Refused(404, "no such number")


def test_a_short_code_rings_the_department_main_extension() -> None:
    assert PLAN.decide("800", Cos.INTERNAL) == ToExtension("1001", via_short_code="800")


@pytest.mark.parametrize("cos", ALL_COS)
@pytest.mark.parametrize("number", ["110", "119", "120", "122"])
@pytest.mark.parametrize("prefix", ["", "0"])
def test_emergency_numbers_are_always_allowed(number: str, prefix: str, cos: Cos) -> None:
    assert PLAN.decide(prefix + number, cos) == ToPstn(number, Destination.EMERGENCY)


@pytest.mark.parametrize(
    ("dialled", "action", "argument"),
    [
        ("*97", FeatureAction.VOICEMAIL, ""),
        ("*721002", FeatureAction.FORWARD_ON, "1002"),
        ("*72013800138000", FeatureAction.FORWARD_ON, "013800138000"),
        ("*73", FeatureAction.FORWARD_OFF, ""),
        ("*78", FeatureAction.DND_ON, ""),
        ("*79", FeatureAction.DND_OFF, ""),
        ("*8", FeatureAction.PICKUP, ""),
        ("*81002", FeatureAction.PICKUP, "1002"),
        ("*43", FeatureAction.ECHO, ""),
        ("*44", FeatureAction.TEST_TONE, ""),
    ],
)
def test_feature_codes(dialled: str, action: FeatureAction, argument: str) -> None:
    decision = PLAN.decide(dialled, Cos.INTERNAL)
    assert isinstance(decision, ToFeature)
    assert (decision.action, decision.argument) == (action, argument)


@pytest.mark.parametrize(
    ("dialled", "status"),
    [("*72", 484), ("*1", 404), ("*", 404), ("*97#", 404), ("*9", 404)],
)
def test_bad_feature_codes(dialled: str, status: int) -> None:
    decision = PLAN.decide(dialled, Cos.INTERNATIONAL)
    assert isinstance(decision, Refused) and decision.status == status


@pytest.mark.parametrize(
    ("after_prefix", "destination"),
    [
        ("12345678", Destination.LOCAL),  # a city number without area code
        ("01012345678", Destination.LOCAL),  # our own area code
        ("02112345678", Destination.NATIONAL),  # another city
        ("075512345678", Destination.NATIONAL),
        ("13800138000", Destination.NATIONAL),  # a mobile
        ("0014155550100", Destination.INTERNATIONAL),
        ("00861012345678", Destination.INTERNATIONAL),
        ("12345", Destination.LOCAL),  # city service numbers
    ],
)
def test_outbound_numbers_are_classified(after_prefix: str, destination: Destination) -> None:
    assert PLAN.classify(after_prefix) is destination


RANK = {Cos.INTERNAL: 0, Cos.LOCAL: 1, Cos.NATIONAL: 2, Cos.INTERNATIONAL: 3}
NEEDED = {Destination.LOCAL: 1, Destination.NATIONAL: 2, Destination.INTERNATIONAL: 3}


@pytest.mark.parametrize("cos", ALL_COS)
@pytest.mark.parametrize(
    ("dialled", "destination"),
    [
        ("012345678", Destination.LOCAL),
        ("002112345678", Destination.NATIONAL),
        ("013800138000", Destination.NATIONAL),
        ("00014155550100", Destination.INTERNATIONAL),
    ],
)
def test_class_of_service_is_enforced_on_every_outbound_call(
    dialled: str, destination: Destination, cos: Cos
) -> None:
    decision = PLAN.decide(dialled, cos)
    if RANK[cos] >= NEEDED[destination]:
        assert decision == ToPstn(dialled[1:], destination)
    else:
        assert isinstance(decision, Refused) and decision.status == 403
        assert destination.value in decision.reason


@pytest.mark.parametrize("dialled", ["00", "01", "0ab", "0+"])
def test_incomplete_or_malformed_outbound_numbers(dialled: str) -> None:
    decision = PLAN.decide(dialled, Cos.INTERNATIONAL)
    assert isinstance(decision, Refused) and decision.status in (404, 484)


@pytest.mark.parametrize("dialled", ["", "abc", "1001;x", "1" * 33, "sip"])
def test_undialable_strings_are_not_found(dialled: str) -> None:
    assert PLAN.decide(dialled, Cos.INTERNATIONAL) == Refused(404, "not a dialable number")


def test_the_department_caps_the_extension() -> None:
    assert effective_cos(Cos.INTERNATIONAL, Cos.LOCAL) is Cos.LOCAL
    assert effective_cos(Cos.INTERNAL, Cos.INTERNATIONAL) is Cos.INTERNAL
    assert effective_cos(Cos.NATIONAL, None) is Cos.NATIONAL
    for cos in ALL_COS:
        assert cos_allows(cos, Destination.EMERGENCY)
        assert cos_allows(cos, Destination.INTERNAL)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ((RuleKind.EXTENSIONS, "100-2000", ""), "equal-length"),
        ((RuleKind.EXTENSIONS, "2000-1000", ""), "equal-length"),
        ((RuleKind.SHORT_CODE, "8a0", "1001"), "digits"),
        ((RuleKind.FEATURE, "97", "voicemail"), "star"),
        ((RuleKind.OUTBOUND_PREFIX, "900", ""), "two digits"),
        ((RuleKind.EMERGENCY, "11x", ""), "digits"),
        ((RuleKind.AREA_CODE, "10", ""), "area code"),
    ],
)
def test_bad_rules_are_refused_by_name(rule: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DialPlan.from_rules([rule])
    with pytest.raises(ValueError):
        DialPlan.from_rules([("nonsense", "1", "")])
    with pytest.raises(ValueError):
        DialPlan.from_rules([(RuleKind.FEATURE, "*1", "launch_rockets")])


def test_a_plan_without_prefix_or_ranges_routes_nothing_out() -> None:
    plan = DialPlan.from_rules([(RuleKind.EXTENSIONS, "200-299", "")])
    assert plan.decide("250", Cos.INTERNATIONAL) == ToExtension("250")
    assert plan.decide("110", Cos.INTERNAL) == Refused(404, "no such number")
    assert ExtensionRange.parse("555") == ExtensionRange("555", "555")


@given(st.text(alphabet="0123456789*#+abc;", max_size=40), st.sampled_from(ALL_COS))
def test_any_string_gets_one_decision_and_refusals_respect_the_class(
    dialled: str, cos: Cos
) -> None:
    decision = PLAN.decide(dialled, cos)
    assert isinstance(decision, ToExtension | ToFeature | ToPstn | Refused)
    if isinstance(decision, ToPstn):
        assert cos_allows(cos, decision.destination)
