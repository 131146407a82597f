"""Room directory and attendance: the database side of the conference, free of HTTP.

Rooms are the source of truth (rule 2 of the house); who is in a room right now
lives in shared state (``conference.presence``), rebuilt by the nodes that hold
the peers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conference.models import Attendance, Room, RoomKind
from core.db import utcnow

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PIN_PATTERN = re.compile(r"^[0-9]{4,12}$")


class RoomError(Exception):
    """A room request that cannot be done; the message says why."""


@dataclass(frozen=True)
class RoomView:
    name: str
    title: str
    kind: RoomKind
    has_pin: bool
    locked: bool
    main_venue: str | None


def view_of(room: Room) -> RoomView:
    return RoomView(
        name=room.name,
        title=room.title,
        kind=room.kind,
        has_pin=room.pin_hash is not None,
        locked=room.locked,
        main_venue=room.main_venue,
    )


def pin_digest(pin: str) -> str:
    """Salted SHA-256 as ``salt$hex``: a leaked table does not list the PINs outright."""
    salt = secrets.token_hex(4)
    return f"{salt}${hashlib.sha256((salt + pin).encode()).hexdigest()[:55]}"


def pin_matches(stored: str | None, given: str | None) -> bool:
    if stored is None or not given or "$" not in stored:
        return False
    salt, digest = stored.split("$", 1)
    expected = hashlib.sha256((salt + given).encode()).hexdigest()[: len(digest)]
    return hmac.compare_digest(expected, digest)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise RoomError("room name must be 1-64 letters, digits, '_' or '-'")
    return name


def check_pin(pin: str | None) -> str | None:
    if pin is not None and not PIN_PATTERN.match(pin):
        raise RoomError("PIN must be 4-12 digits")
    return pin


async def add_room(
    session: AsyncSession,
    name: str,
    *,
    pin: str | None = None,
    kind: RoomKind = RoomKind.MEETING,
    title: str = "",
) -> RoomView:
    check_name(name)
    check_pin(pin)
    if await session.scalar(select(Room).where(Room.name == name)) is not None:
        raise RoomError(f"room {name!r} already exists")
    room = Room(
        name=name,
        title=title or name,
        kind=kind,
        pin_hash=pin_digest(pin) if pin else None,
        locked=False,
        main_venue=None,
    )
    session.add(room)
    await session.flush()
    return view_of(room)


async def ensure_command_room(session: AsyncSession, name: str) -> RoomView:
    """The command room exists from the first start on: it is always open."""
    room = await session.scalar(select(Room).where(Room.name == name))
    if room is None:
        return await add_room(session, name, kind=RoomKind.COMMAND, title="应急指挥室 Command room")
    if room.kind is not RoomKind.COMMAND:
        room.kind = RoomKind.COMMAND
    room.locked = False
    return view_of(room)


async def list_rooms(session: AsyncSession) -> list[RoomView]:
    rooms = await session.scalars(select(Room).order_by(Room.kind, Room.name))
    return [view_of(room) for room in rooms]


async def get_room(session: AsyncSession, name: str) -> Room:
    room = await session.scalar(select(Room).where(Room.name == name))
    if room is None:
        raise RoomError(f"no room named {name!r}")
    return room


async def remove_room(session: AsyncSession, name: str) -> None:
    room = await get_room(session, name)
    if room.kind is RoomKind.COMMAND:
        raise RoomError("the command room is always open and cannot be removed")
    await session.delete(room)


async def set_locked(session: AsyncSession, name: str, locked: bool) -> RoomView:
    room = await get_room(session, name)
    if locked and room.kind is RoomKind.COMMAND:
        raise RoomError("the command room is always open and cannot be locked")
    room.locked = locked
    return view_of(room)


async def set_main_venue(session: AsyncSession, name: str, venue: str | None) -> RoomView:
    room = await get_room(session, name)
    room.main_venue = venue
    return view_of(room)


async def record_join(
    session: AsyncSession, room_name: str, venue: str, role: str, node: str
) -> int:
    room = await get_room(session, room_name)
    entry = Attendance(room_id=room.id, venue=venue, role=role, node=node, reason="")
    session.add(entry)
    await session.flush()
    return entry.id


async def record_leave(session: AsyncSession, attendance_id: int, reason: str) -> None:
    await session.execute(
        update(Attendance)
        .where(Attendance.id == attendance_id, Attendance.left_at.is_(None))
        .values(left_at=utcnow(), reason=reason[:32])
    )


async def close_open_attendance(session: AsyncSession, node: str) -> None:
    """At start-up, stays left open by a crash of this node are closed."""
    await session.execute(
        update(Attendance)
        .where(Attendance.node == node, Attendance.left_at.is_(None))
        .values(left_at=utcnow(), reason="node_restart")
    )
