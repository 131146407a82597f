"""``unicomm sms``: import contacts, send a broadcast, follow its progress."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from core.auth import audit
from core.cli import CLI_ACTOR, CliError
from core.context import AppContext
from sms import service
from sms.csv_import import CsvFormatError
from sms.escalation import call_counts


async def _import(ctx: AppContext, args: argparse.Namespace) -> int:
    path = Path(args.csv)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    async with ctx.db.session() as session:
        try:
            report = await service.import_contacts(session, data)
        except CsvFormatError as exc:
            raise CliError(f"{path}: {exc}") from None
        await audit(
            session,
            CLI_ACTOR,
            "sms.contacts.import",
            str(path),
            created=report.created,
            updated=report.updated,
            bad_rows=len(report.errors),
        )
    print(
        f"imported {report.created} new, updated {report.updated}, "
        f"refused {len(report.errors)} rows"
    )
    for error in report.errors:
        print(f"{path.name}: {error}")
    return 1 if report.errors else 0


async def _send(ctx: AppContext, args: argparse.Namespace) -> int:
    if not args.group and not args.department:
        raise CliError("say whom to text: --group NAME or --department CODE")
    after = args.escalate_after
    async with ctx.db.session() as session:
        try:
            contacts = await service.resolve_audience(
                session, groups=args.group or [], departments=args.department or []
            )
            broadcast = await service.create_broadcast(
                session,
                body=args.text,
                created_by=CLI_ACTOR,
                contacts=contacts,
                approval_threshold=ctx.settings.sms_approval_threshold,
                audience=_audience(args),
                escalate_after_seconds=max(1, round(after * 60)) if after else None,
                escalate_call=args.call,
                escalate_group=args.backup_group or "",
            )
        except service.SmsError as exc:
            raise CliError(str(exc)) from None
        await audit(
            session,
            CLI_ACTOR,
            "sms.broadcast.create",
            str(broadcast.id),
            recipients=broadcast.recipient_count,
        )
    print(broadcast.id)
    return 0


def _audience(args: argparse.Namespace) -> str:
    parts = [f"group:{name}" for name in args.group or []]
    parts += [f"department:{code}" for code in args.department or []]
    return ", ".join(parts)


async def _status(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            broadcast = await service.get_broadcast(session, args.id)
        except service.SmsError as exc:
            raise CliError(str(exc)) from None
        counts = await service.state_counts(session, args.id)
        calls = await call_counts(session, args.id)
    print(
        f"broadcast {broadcast.id}: {broadcast.status.value}, "
        f"{broadcast.recipient_count} recipients"
    )
    for state, count in counts.items():
        print(f"{state}\t{count}")
    if broadcast.escalated_at is not None:
        print(f"escalation: {broadcast.escalation_note}")
    for state, count in calls.items():
        print(f"call {state}\t{count}")
    return 0


async def _approve(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            broadcast = await service.approve_broadcast(session, args.id, args.by)
        except service.SmsError as exc:
            raise CliError(str(exc)) from None
        await audit(session, args.by, "sms.broadcast.approve", str(args.id), via="cli")
    print(f"broadcast {broadcast.id} approved by {args.by}")
    return 0


async def _cancel(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            spared = await service.cancel_broadcast(session, args.id)
        except service.SmsError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "sms.broadcast.cancel", str(args.id), spared=spared)
    print(f"broadcast {args.id} cancelled; {spared} recipients not texted")
    return 0


def add_cli(commands: Any) -> None:
    sms = commands.add_parser("sms", help="group SMS alerts").add_subparsers(
        dest="sms_command", required=True
    )
    imp = sms.add_parser("import", help="import contacts from a CSV (name,mobile,department,role)")
    imp.add_argument("csv")
    imp.set_defaults(run=_import)
    send = sms.add_parser("send", help="send a broadcast; prints its id")
    audience = send.add_argument_group("audience (one or more)")
    audience.add_argument("--group", action="append", help="group name")
    audience.add_argument("--department", action="append", help="department code")
    send.add_argument("--text", required=True)
    escalation = send.add_argument_group("escalation (once, for whoever has not acknowledged)")
    escalation.add_argument("--escalate-after", type=float, metavar="MINUTES")
    escalation.add_argument("--call", action="store_true", help="the exchange calls them")
    escalation.add_argument("--backup-group", metavar="NAME", help="text this group too")
    send.set_defaults(run=_send)
    status = sms.add_parser("status", help="recipients per delivery state")
    status.add_argument("id", type=int)
    status.set_defaults(run=_status)
    approve = sms.add_parser("approve", help="approve a broadcast as the second officer")
    approve.add_argument("id", type=int)
    approve.add_argument("--by", required=True, help="the approving officer's login")
    approve.set_defaults(run=_approve)
    cancel = sms.add_parser("cancel", help="cancel what has not gone out")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(run=_cancel)
