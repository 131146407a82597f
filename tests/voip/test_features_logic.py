"""The sans-I/O parts of the PBX features: forwarding steps, ring-group stages, activity."""

from __future__ import annotations

import pytest

from voip.features.activity import Activity
from voip.features.forwarding import (
    Busy,
    ForwardTo,
    RingPhones,
    ToVoicemail,
    after_failure,
    first_step,
)
from voip.features.ringgroups import RingGroup, Strategy, parse_members, stages
from voip.features.settings import CallFeatures, hash_pin, pin_matches


def test_plain_extension_rings_then_goes_to_voicemail() -> None:
    features = CallFeatures(no_answer_seconds=12)
    assert first_step("1001", features) == RingPhones("1001", 12.0)
    assert after_failure("1001", features, 408) == ToVoicemail("1001")
    assert after_failure("1001", features, 486) == ToVoicemail("1001")
    assert after_failure("1001", features, 404) is None


def test_without_voicemail_or_forwarding_the_default_ring_time_applies() -> None:
    features = CallFeatures(voicemail=False)
    assert first_step("1001", features) == RingPhones("1001", None)
    assert after_failure("1001", features, 408) is None
    assert after_failure("1001", features, 486) is None


def test_dnd_goes_to_voicemail_or_busy() -> None:
    assert first_step("1001", CallFeatures(dnd=True)) == ToVoicemail("1001")
    assert isinstance(first_step("1001", CallFeatures(dnd=True, voicemail=False)), Busy)


def test_dnd_wins_over_forwarding() -> None:
    step = first_step("1001", CallFeatures(dnd=True, voicemail=False, forward_always="1002"))
    assert isinstance(step, Busy)


def test_forward_always_never_rings() -> None:
    assert first_step("1001", CallFeatures(forward_always="1003")) == ForwardTo("1003", "always")


@pytest.mark.parametrize("status", [486, 600, 603])
def test_busy_forwards_to_the_busy_target(status: int) -> None:
    features = CallFeatures(forward_busy="1002", forward_no_answer="1003")
    assert after_failure("1001", features, status) == ForwardTo("1002", "busy")


@pytest.mark.parametrize("status", [408, 480, 487])
def test_no_answer_forwards_to_the_no_answer_target(status: int) -> None:
    features = CallFeatures(forward_busy="1002", forward_no_answer="1003")
    assert after_failure("1001", features, status) == ForwardTo("1003", "no_answer")


def test_pins_are_salted_and_checked() -> None:
    stored = hash_pin("2468")
    assert stored != hash_pin("2468")
    assert pin_matches("2468", stored)
    assert not pin_matches("2469", stored)
    assert not pin_matches("2468", "garbage")


def test_ordered_groups_ring_free_members_one_by_one() -> None:
    group = RingGroup("600", "Desk", Strategy.ORDERED, ("1001", "1002", "1003"))
    assert stages(group, lambda number: number == "1002") == [("1001",), ("1003",)]
    assert stages(group, lambda number: True) == []


def test_simultaneous_groups_ring_free_members_together() -> None:
    group = RingGroup("600", "Desk", Strategy.SIMULTANEOUS, ("1001", "1002", "1003"))
    assert stages(group, lambda number: number == "1001") == [("1002", "1003")]


@pytest.mark.parametrize("text", ["", " , ", "1001,abc"])
def test_members_must_be_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_members(text)


def test_members_are_split_on_commas_and_semicolons() -> None:
    assert parse_members("1001, 1002;1003") == ("1001", "1002", "1003")


def test_activity_follows_answered_and_ended_calls() -> None:
    activity = Activity()
    activity.changed("c1", "ringing", ("1001", "1002"))
    assert not activity.talking("1001")
    activity.changed("c1", "answered", ("1001", "1002"))
    activity.changed("c2", "answered", ("1001", "1003"))
    assert activity.talking("1001") and activity.talking("1002")
    activity.changed("c1", "ended", ("1001", "1002"))
    assert activity.talking("1001") and not activity.talking("1002")
    activity.changed("c2", "ended", ("1001", "1003"))
    assert not activity.talking("1001")
