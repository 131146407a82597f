"""The room state machine and layout rule, without network or clock."""

from __future__ import annotations

import pytest

from conference.room import Member, Refusal, Role, RoomState, SpeakerDetector


def room_with(*venues: tuple[str, Role]) -> RoomState:
    room = RoomState("r1")
    for venue, role in venues:
        room.admit(Member(venue, role))
    return room


def test_main_venue_is_seen_by_all_and_nobody_sees_itself() -> None:
    room = room_with(("A", Role.CHAIR), ("B", Role.VENUE), ("C", Role.VENUE), ("V", Role.VIEWER))
    assert room.effective_main() == "A"
    assert room.layout_for("B", 2) == [("r1", "A"), ("r1", "C"), None]
    assert room.layout_for("V", 2) == [("r1", "A"), ("r1", "B"), ("r1", "C")]
    # The main venue sees the latest speaker large.
    room.note_speaker("C")
    assert room.layout_for("A", 2) == [("r1", "C"), ("r1", "B"), None]


def test_last_n_keeps_the_most_recent_speakers() -> None:
    room = room_with(*[(f"v{i}", Role.VENUE) for i in range(8)])
    room.set_main("v0")
    for venue in ("v5", "v6", "v7", "v6"):
        room.note_speaker(venue)
    assert room.layout_for("v1", 2) == [("r1", "v0"), ("r1", "v6"), ("r1", "v7")]
    assert room.layout_for("v6", 2) == [("r1", "v0"), ("r1", "v7"), ("r1", "v5")]


def test_viewers_and_muted_venues_do_not_become_speakers() -> None:
    room = room_with(("A", Role.VENUE), ("V", Role.VIEWER))
    assert not room.note_speaker("V")
    room.set_muted("A", True)
    assert not room.note_speaker("A")
    with pytest.raises(Refusal):
        room.set_main("V")


def test_lock_refuses_newcomers_but_not_the_chair_or_a_rejoin() -> None:
    room = room_with(("A", Role.CHAIR), ("B", Role.VENUE))
    room.set_locked(True)
    with pytest.raises(Refusal) as refused:
        room.admit(Member("C", Role.VENUE))
    assert refused.value.code == "locked"
    room.admit(Member("D", Role.CHAIR))
    room.set_muted("B", True)
    previous = room.admit(Member("B", Role.VENUE))  # the room PC came back after a drop
    assert previous is not None and room.members["B"].muted_by_chair


def test_command_room_cannot_be_locked_and_chair_commands_need_a_chair() -> None:
    room = RoomState("command", always_open=True)
    room.admit(Member("B", Role.VENUE))
    with pytest.raises(Refusal):
        room.set_locked(True)
    with pytest.raises(Refusal) as refused:
        room.require_chair("B")
    assert refused.value.code == "forbidden"


def test_pushed_picture_replaces_the_main_slot() -> None:
    room = room_with(("A", Role.VENUE), ("B", Role.VENUE))
    assert room.layout_for("A", 1, pushed_main=("command", "chief")) == [
        ("command", "chief"),
        ("r1", "B"),
    ]


def test_speaker_detector_needs_a_held_lead() -> None:
    detector = SpeakerDetector(threshold_dbov=55, hold=2)
    for _ in range(5):
        detector.feed("A", 20)  # loud
        detector.feed("B", 90)  # quiet
    assert detector.tick() is None
    for _ in range(5):
        detector.feed("A", 20)
    assert detector.tick() == "A"
    for _ in range(5):
        detector.feed("A", 120)  # silence: nobody takes over
    assert detector.tick() is None
    detector.forget("A")
    assert detector.speaker is None
