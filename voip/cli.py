"""``unicomm ext``, ``calls``, ``cdr`` and ``trunk``: the exchange from the command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from core.auth import audit
from core.cli import CLI_ACTOR, CliError, ask_server
from core.config import Settings
from core.context import AppContext
from voip import cdr_export, cost_report, csv_import, did, rating, service
from voip.models import ClassOfService


async def _ext_add(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            await service.add_extension(
                session,
                number=args.number,
                name=args.name,
                password=args.password,
                realm=ctx.settings.sip_realm,
                department_code=args.department,
                class_of_service=ClassOfService(args.cos),
            )
        except service.DirectoryError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "voip.extension.add", args.number)
    print(f"added extension {args.number} ({args.name})")
    return 0


async def _ext_list(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        for view in await service.list_extensions(session):
            state = "" if view.enabled else "\t(disabled)"
            cos = view.class_of_service.value
            print(f"{view.number}\t{view.name}\t{view.department or '-'}\t{cos}{state}")
    return 0


async def _ext_edit(ctx: AppContext, args: argparse.Namespace) -> int:
    keep = service.KEEP
    department: str | service.Keep | None = keep
    if args.no_department:
        department = None
    elif args.department is not None:
        department = args.department
    edit = service.ExtensionEdit(
        name=args.name if args.name is not None else keep,
        department_code=department,
        class_of_service=ClassOfService(args.cos) if args.cos else keep,
        enabled=args.enabled if args.enabled is not None else keep,
        password=args.password if args.password is not None else keep,
    )
    async with ctx.db.session() as session:
        try:
            _, changed = await service.edit_extension(
                session, args.number, edit, realm=ctx.settings.sip_realm
            )
        except service.DirectoryError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "voip.extension.edit", args.number, changed=changed)
    print(
        f"extension {args.number}: " + (f"changed {', '.join(changed)}" if changed else "no change")
    )
    return 0


async def _ext_remove(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            await service.remove_extension(session, args.number)
        except service.DirectoryError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "voip.extension.remove", args.number)
    print(f"removed extension {args.number}")
    return 0


async def _ext_import(ctx: AppContext, args: argparse.Namespace) -> int:
    path = Path(args.csv)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    report = await csv_import.import_and_audit(ctx, data, CLI_ACTOR)
    for error in report.errors:
        print(
            f"line {error.line}: {error.field}: {error.reason}"
            if error.line
            else f"{error.field}: {error.reason}"
        )
    for number in report.imported:
        print(f"imported {number}")
    print(f"{len(report.imported)} imported, {len(report.failed_lines)} rows refused")
    return 0 if report.ok else 1


async def _calls(settings: Settings, args: argparse.Namespace) -> int:
    calls: list[dict[str, Any]] = await ask_server(settings, "GET", "/api/voip/calls")
    if not calls:
        print("no live calls")
        return 0
    now = dt.datetime.now(dt.UTC)
    rows = [("CALL-ID", "CALLER", "CALLEE", "STATE", "STARTED", "DURATION", "NODE")]
    for call in calls:
        started = _time(call.get("started_at"))
        answered = _time(call.get("answered_at"))
        rows.append(
            (
                str(call["call_id"]),
                str(call["caller"]),
                str(call["callee"]),
                str(call["state"]),
                service.shown(started, settings.zone) or "-",
                # Talking time once answered; before that, how long it has been ringing.
                _duration(now - (answered or started)) if started else "-",
                str(call.get("node") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _time(value: Any) -> dt.datetime | None:
    return service.as_utc(dt.datetime.fromisoformat(value)) if value else None


def _duration(elapsed: dt.timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


async def _cdr_export(ctx: AppContext, args: argparse.Namespace) -> int:
    try:
        cdr_export.month_bounds(args.month, ctx.settings.zone)
    except cdr_export.MonthError as exc:
        raise CliError(str(exc)) from None
    async with ctx.db.session() as session:
        rows = await cdr_export.cdr_for_month(session, args.month, ctx.settings.zone)
    text = cdr_export.cdr_csv(rows)
    if args.output:
        await asyncio.to_thread(_write_file, Path(args.output), text)
        print(f"wrote {len(rows)} call records of {args.month} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def _cdr_report(ctx: AppContext, args: argparse.Namespace) -> int:
    discount = ctx.settings.voip_bulk_discount_percent
    try:
        async with ctx.db.session() as session:
            report = await cost_report.cost_report(session, args.month, discount, ctx.settings.zone)
    except cdr_export.MonthError as exc:
        raise CliError(str(exc)) from None
    if args.csv:
        sys.stdout.write(rating.report_csv(report))
        return 0
    print(f"call costs {args.month} (carrier discount {discount:g}%, amounts in CNY)")
    print(
        f"{'department':<24} {'calls':>6} {'out':>5} {'minutes':>8} {'cost':>10} {'retail':>10}"
        f" {'savings':>10}"
    )
    for row in [*report.rows, report.total]:
        print(
            f"{(row.department or '-')[:24]:<24} {row.calls:>6} {row.outbound_calls:>5} "
            f"{row.minutes:>8.1f} {rating.yuan(row.cost):>10} {rating.yuan(row.retail):>10} "
            f"{rating.yuan(row.savings):>10}"
        )
    return 0


async def _did_list(ctx: AppContext, args: argparse.Namespace) -> int:
    entries = await did.load_rows(ctx.db)
    if not entries:
        print("no DID: every call from the carrier gets 404")
    for entry in entries:
        print(f"{entry.did}\t{entry.kind.value}\t{entry.target}\t{entry.name}".rstrip())
    return 0


async def _did_set(ctx: AppContext, args: argparse.Namespace) -> int:
    try:
        entry = did.check(did.Did(args.did, did.DidKind(args.kind), args.target, args.name))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    async with ctx.db.session() as session:
        if not await did.target_exists(session, entry.kind, entry.target):
            raise CliError(f"there is no {entry.kind.value.replace('_', ' ')} {entry.target}")
    await did.save_row(ctx.db, entry)
    async with ctx.db.session() as session:
        await audit(
            session, CLI_ACTOR, "voip.trunk_did.save", entry.did, kind=entry.kind.value,
            to=entry.target,
        )  # fmt: skip
    # A running server reads the table again within seconds.
    print(f"DID {entry.did} -> {entry.kind.value} {entry.target}")
    return 0


async def _did_remove(ctx: AppContext, args: argparse.Namespace) -> int:
    number = did.normalise(args.did)
    if not await did.remove_row(ctx.db, number):
        raise CliError(f"no DID {number}")
    async with ctx.db.session() as session:
        await audit(session, CLI_ACTOR, "voip.trunk_did.remove", number)
    print(f"removed DID {number}")
    return 0


def _write_file(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="")


def add_cli(commands: Any) -> None:
    ext = commands.add_parser("ext", help="telephone extensions").add_subparsers(
        dest="ext_command", required=True
    )
    add = ext.add_parser("add", help="add an extension")
    add.add_argument("number")
    add.add_argument("--name", required=True)
    add.add_argument("--password", required=True)
    add.add_argument("--department", help="department code")
    add.add_argument(
        "--cos",
        default="internal",
        choices=[c.value for c in ClassOfService],
        help="class of service",
    )
    add.set_defaults(run=_ext_add)
    ext.add_parser("list", help="list extensions").set_defaults(run=_ext_list)
    edit = ext.add_parser("edit", help="change an extension")
    edit.add_argument("number")
    edit.add_argument("--name")
    departments = edit.add_mutually_exclusive_group()
    departments.add_argument("--department", help="department code")
    departments.add_argument("--no-department", action="store_true", help="remove the department")
    edit.add_argument("--cos", choices=[c.value for c in ClassOfService], help="class of service")
    edit.add_argument("--password", help="a new SIP password")
    enabled = edit.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_const", const=True)
    enabled.add_argument("--disable", dest="enabled", action="store_const", const=False)
    edit.set_defaults(run=_ext_edit)
    remove = ext.add_parser("remove", help="remove an extension")
    remove.add_argument("number")
    remove.set_defaults(run=_ext_remove)
    import_ = ext.add_parser(
        "import",
        help="add extensions from CSV (number,name,department,password[,class_of_service])",
    )
    import_.add_argument("csv", metavar="CSV", help="the file; UTF-8, with or without BOM")
    import_.set_defaults(run=_ext_import)

    commands.add_parser("calls", help="list live calls (asks the running server)").set_defaults(
        run=_calls, direct=True
    )

    cdr = commands.add_parser("cdr", help="call-detail records").add_subparsers(
        dest="cdr_command", required=True
    )
    export = cdr.add_parser("export", help="write a month's call records as CSV")
    export.add_argument("--month", required=True, help="YYYY-MM (in the timezone setting)")
    export.add_argument("--output", help="file to write; standard output when omitted")
    export.set_defaults(run=_cdr_export)
    report = cdr.add_parser("report", help="a month's call costs per department")
    report.add_argument("--month", required=True, help="YYYY-MM (in the timezone setting)")
    report.add_argument("--csv", action="store_true", help="CSV instead of a table")
    report.set_defaults(run=_cdr_report)

    trunk = commands.add_parser("trunk", help="the carrier trunk").add_subparsers(
        dest="trunk_command", required=True
    )
    dids = trunk.add_parser("did", help="inbound numbers (DID) and where they ring")
    did_commands = dids.add_subparsers(dest="did_command", required=True)
    did_commands.add_parser("list", help="list the DIDs").set_defaults(run=_did_list)
    set_ = did_commands.add_parser("set", help="point a DID at an extension, group or IVR")
    set_.add_argument("did", help="the number the carrier sends, e.g. 01088880001")
    set_.add_argument("kind", choices=[kind.value for kind in did.DidKind])
    set_.add_argument("target", help="the extension, ring group or IVR menu number")
    set_.add_argument("--name", default="", help="a description")
    set_.set_defaults(run=_did_set)
    remove_did = did_commands.add_parser("remove", help="remove a DID (its calls get 404)")
    remove_did.add_argument("did")
    remove_did.set_defaults(run=_did_remove)
