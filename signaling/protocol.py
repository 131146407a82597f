"""The conference signalling protocol: JSON messages over one WebSocket, sans-I/O.

Every frame is one JSON object with a ``type``. Client messages are validated one
by one: a frame that is not JSON, too large, of an unknown type or with a bad
field is answered with an ``error`` message and the connection (and the room)
carries on. The protocol is documented in ``docs/architecture.md``.

Client -> server::

    join          {room, venue, role: chair|venue|viewer, pin?}
    answer        {sdp}                       the answer to the server's offer
    leave         {}
    mute          {audio, video}              this venue's own microphone/camera state
    share         {on}                        this venue shares its screen
    ping          {}
    mute_venue    {venue, muted}              chair
    remove_venue  {venue}                     chair
    lock_room     {locked}                    chair
    set_main      {venue}                     chair
    pull_venue    {room, venue}               chair of the command room
    return_venue  {venue}                     chair of the command room
    push_picture  {room, on}                  chair of the command room
    recording     {on}                        chair

Server -> client: ``joined``, ``offer``, ``room``, ``layout``, ``muted``,
``removed``, ``moved``, ``alert``, ``pong`` and ``error``.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_MESSAGE_BYTES = 64 * 1024

RoomName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Venue names are what a room PC is called ("东城区会议室"): any text without control
# characters, short enough for a tile label.
VenueName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
ParticipantRole = Literal["chair", "venue", "viewer"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- client to server ------------------------------------------------------------------


class Join(_Message):
    type: Literal["join"]
    room: RoomName
    venue: VenueName
    role: ParticipantRole = "venue"
    pin: Annotated[str, Field(max_length=12)] | None = None


class Answer(_Message):
    type: Literal["answer"]
    sdp: Annotated[str, Field(min_length=10, max_length=60_000)]


class Leave(_Message):
    type: Literal["leave"]


class Mute(_Message):
    type: Literal["mute"]
    audio: bool
    video: bool


class Share(_Message):
    type: Literal["share"]
    on: bool


class Ping(_Message):
    type: Literal["ping"]


class MuteVenue(_Message):
    type: Literal["mute_venue"]
    venue: VenueName
    muted: bool


class RemoveVenue(_Message):
    type: Literal["remove_venue"]
    venue: VenueName


class LockRoom(_Message):
    type: Literal["lock_room"]
    locked: bool


class SetMain(_Message):
    type: Literal["set_main"]
    venue: VenueName


class PullVenue(_Message):
    type: Literal["pull_venue"]
    room: RoomName
    venue: VenueName


class ReturnVenue(_Message):
    type: Literal["return_venue"]
    venue: VenueName


class PushPicture(_Message):
    type: Literal["push_picture"]
    room: RoomName
    on: bool


class Recording(_Message):
    type: Literal["recording"]
    on: bool


ChairCommand = (
    MuteVenue | RemoveVenue | LockRoom | SetMain | PullVenue | ReturnVenue | PushPicture | Recording
)
ClientMessage = Annotated[
    Join | Answer | Leave | Mute | Share | Ping | ChairCommand,
    Field(discriminator="type"),
]
CHAIR_COMMANDS = (
    MuteVenue,
    RemoveVenue,
    LockRoom,
    SetMain,
    PullVenue,
    ReturnVenue,
    PushPicture,
    Recording,
)

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


# -- server to client ------------------------------------------------------------------


class Joined(_Message):
    type: Literal["joined"] = "joined"
    room: str
    venue: str
    role: ParticipantRole
    slots: int


class SlotMids(_Message):
    index: int
    audio: str
    video: str


class Offer(_Message):
    type: Literal["offer"] = "offer"
    sdp: str
    publish: SlotMids | None  # index -1: the transceivers this venue sends on
    slots: list[SlotMids]


class VenueInfo(_Message):
    venue: str
    role: ParticipantRole
    muted: bool  # muted by the chair
    audio: bool
    video: bool
    sharing: bool
    guest_from: str | None = None


class RoomEvent(_Message):
    type: Literal["room"] = "room"
    room: str
    locked: bool
    main: str | None
    pushed_from: str | None
    recording: bool
    venues: list[VenueInfo]


class SlotSource(_Message):
    index: int
    room: str | None
    venue: str | None


class Layout(_Message):
    type: Literal["layout"] = "layout"
    slots: list[SlotSource]
    speaker: str | None


class Muted(_Message):
    type: Literal["muted"] = "muted"
    muted: bool
    by: str


class Removed(_Message):
    type: Literal["removed"] = "removed"
    reason: str


class Moved(_Message):
    type: Literal["moved"] = "moved"
    room: str
    by: str


class Alert(_Message):
    type: Literal["alert"] = "alert"
    headline: str
    description: str
    severity: str


class Pong(_Message):
    type: Literal["pong"] = "pong"


class Error(_Message):
    type: Literal["error"] = "error"
    code: Literal[
        "malformed",
        "invalid",
        "unauthenticated",
        "forbidden",
        "not_found",
        "locked",
        "conflict",
        "state",
        "unavailable",
    ]
    message: str
    detail: list[dict[str, str]] | None = None
    ref: str | None = None  # the type of the message refused, when known


ServerMessage = Joined | Offer | RoomEvent | Layout | Muted | Removed | Moved | Alert | Pong | Error


def parse_client_message(raw: str | bytes) -> ClientMessage | Error:
    """One frame in, a validated message or the error to answer with out."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return Error(code="malformed", message=f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Error(code="malformed", message="message is not valid JSON")
    if not isinstance(data, dict):
        return Error(code="malformed", message="message must be a JSON object")
    ref = data.get("type") if isinstance(data.get("type"), str) else None
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(message)", "message": err["msg"]}
            for err in exc.errors()
        ]
        return Error(code="invalid", message="message refused", detail=fields, ref=ref)


def encode(message: ServerMessage) -> str:
    return message.model_dump_json()
