"""``unicomm room``: meeting rooms from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from conference import service
from conference.models import RoomKind
from core.auth import audit
from core.cli import CLI_ACTOR, CliError
from core.context import AppContext


async def _room_add(ctx: AppContext, args: argparse.Namespace) -> int:
    kind = RoomKind.ADHOC if args.adhoc else RoomKind.MEETING
    async with ctx.db.session() as session:
        try:
            await service.add_room(session, args.name, pin=args.pin, kind=kind, title=args.title)
        except service.RoomError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "conference.room.add", args.name, kind=kind.value)
    print(f"added room {args.name} ({kind.value}{', PIN set' if args.pin else ''})")
    return 0


async def _room_list(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        await service.ensure_command_room(session, ctx.settings.conference_command_room)
        rooms = await service.list_rooms(session)
    for room in rooms:
        flags = [room.kind.value, "pin" if room.has_pin else "no-pin"]
        if room.locked:
            flags.append("locked")
        print(f"{room.name}\t{room.title}\t{','.join(flags)}\tmain={room.main_venue or '-'}")
    return 0


async def _room_remove(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            await service.remove_room(session, args.name)
        except service.RoomError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "conference.room.remove", args.name)
    print(f"removed room {args.name}")
    return 0


def add_cli(commands: Any) -> None:
    room = commands.add_parser("room", help="conference rooms").add_subparsers(
        dest="room_command", required=True
    )
    add = room.add_parser("add", help="add a meeting room")
    add.add_argument("name")
    add.add_argument("--pin", help="4-12 digits a room PC joins with")
    add.add_argument("--title", default="")
    add.add_argument("--adhoc", action="store_true", help="drop the room when it empties")
    add.set_defaults(run=_room_add)
    room.add_parser("list", help="list rooms").set_defaults(run=_room_list)
    remove = room.add_parser("remove", help="remove a room")
    remove.add_argument("name")
    remove.set_defaults(run=_room_remove)
