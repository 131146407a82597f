"""Signalling messages validated one by one (sans-I/O)."""

from __future__ import annotations

import json

import pytest

from signaling.protocol import (
    MAX_MESSAGE_BYTES,
    Error,
    Join,
    MuteVenue,
    RoomEvent,
    encode,
    parse_client_message,
)


def test_join_parses_with_defaults_and_unicode_venue() -> None:
    message = parse_client_message(json.dumps({"type": "join", "room": "r1", "venue": "东城区"}))
    assert message == Join(type="join", room="r1", venue="东城区", role="venue", pin=None)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"type": "teleport"}', "invalid"),
        ('{"type": "join", "room": "../etc", "venue": "A"}', "invalid"),
        ('{"type": "join", "room": "r1", "venue": "A\\u0000"}', "invalid"),
        ('{"type": "mute_venue", "venue": "A"}', "invalid"),
        ('{"type": "answer", "sdp": "v=0", "extra": 1}', "invalid"),
        ("x" * (MAX_MESSAGE_BYTES + 1), "malformed"),
    ],
)
def test_bad_frames_become_error_messages(raw: str, code: str) -> None:
    result = parse_client_message(raw)
    assert isinstance(result, Error)
    assert result.code == code


def test_error_names_the_failing_field_and_the_message_type() -> None:
    result = parse_client_message('{"type": "mute_venue", "venue": "A", "muted": "maybe"}')
    assert isinstance(result, Error)
    assert result.ref == "mute_venue"
    assert result.detail and result.detail[0]["field"] == "mute_venue.muted"


def test_chair_command_and_server_event_round_trip() -> None:
    assert parse_client_message('{"type": "mute_venue", "venue": "B", "muted": true}') == MuteVenue(
        type="mute_venue", venue="B", muted=True
    )
    event = RoomEvent(
        room="r1", locked=False, main="A", pushed_from=None, recording=False, venues=[]
    )
    assert json.loads(encode(event))["type"] == "room"
