"""``unicomm kiosk ...``: pairing, the fleet, groups and takeover alerts from the command line."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp

from core.auth import audit
from core.cli import CLI_ACTOR, CliError
from core.config import Settings
from core.context import CONTROL_TOKEN_FILE, AppContext
from kiosk import service


async def _approve(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            kiosk = await service.approve_pairing(
                session, args.code, args.name or f"kiosk-{args.code}", args.group
            )
        except service.KioskError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "kiosk.approve", kiosk.name, group=args.group)
    print(
        f"approved {args.code}: kiosk {kiosk.id} {kiosk.name}"
        + (f" in {args.group}" if args.group else "")
    )
    return 0


async def _list(ctx: AppContext, args: argparse.Namespace) -> int:
    import datetime as dt

    async with ctx.db.session() as session:
        rows = await service.fleet(
            session,
            dt.timedelta(seconds=ctx.settings.kiosk_heartbeat_seconds),
            dt.timedelta(seconds=ctx.settings.kiosk_stale_seconds),
        )
    for row in rows:
        seen = (
            row.kiosk.last_seen_at.isoformat(timespec="seconds") if row.kiosk.last_seen_at else "-"
        )
        print(f"{row.kiosk.id}\t{row.kiosk.name}\t{row.group or '-'}\t{row.state.value}\t{seen}")
    return 0


async def _group_add(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            group = await service.add_group(
                session, args.code, args.name, args.district, args.street
            )
        except service.KioskError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "kiosk.group.add", group.code)
    print(f"added kiosk group {group.code}")
    return 0


async def _revoke(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        try:
            kiosk = await service.revoke_kiosk(
                session, (await service.kiosk_by_name(session, args.name)).id
            )
        except service.KioskError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "kiosk.revoke", kiosk.name)
    print(f"revoked the device token of {kiosk.name}")
    return 0


async def _ask(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    """The running server pushes alerts to its connected kiosks, so alerts go through it."""
    token_file = settings.path(CONTROL_TOKEN_FILE)
    if not token_file.exists():
        raise CliError(
            f"the server is not running (no {token_file}); start it with `unicomm serve`"
        )
    url = f"http://127.0.0.1:{settings.http_port}{path}"
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.request(method, url, headers=headers, json=body) as response,
        ):
            answer = await response.json(content_type=None)
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach the server at {url}: {exc}") from None
    if response.status >= 400:
        raise CliError(f"server answered {response.status}: {answer.get('error', answer)}")
    return answer


async def _alert(settings: Settings, args: argparse.Namespace) -> int:
    body = {
        "headline": args.text,
        "text": args.detail,
        "groups": args.group or [],
        "expires_minutes": args.expires,
    }
    alert = await _ask(settings, "POST", "/api/kiosk/alerts", body)
    print(f"alert {alert['id']} is on the kiosks")
    return 0


async def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    await _ask(settings, "POST", f"/api/kiosk/alerts/{args.id}/cancel")
    print(f"alert {args.id} cancelled")
    return 0


def add_cli(commands: Any) -> None:
    kiosk = commands.add_parser("kiosk", help="street kiosks").add_subparsers(
        dest="kiosk_command", required=True
    )
    for name in ("approve", "pair"):
        approve = kiosk.add_parser(name, help="approve the pairing code a new kiosk shows")
        approve.add_argument("code")
        approve.add_argument("--name", help="the kiosk's name (default: kiosk-CODE)")
        approve.add_argument("--group", help="kiosk group code")
        approve.set_defaults(run=_approve)
    kiosk.add_parser("list", help="kiosks and their state").set_defaults(run=_list)
    revoke = kiosk.add_parser("revoke", help="revoke a kiosk's device token")
    revoke.add_argument("name")
    revoke.set_defaults(run=_revoke)
    group = kiosk.add_parser("group", help="kiosk groups").add_subparsers(
        dest="group_command", required=True
    )
    group_add = group.add_parser("add", help="add a kiosk group")
    group_add.add_argument("code")
    group_add.add_argument("--name", required=True)
    group_add.add_argument("--district", default="")
    group_add.add_argument("--street", default="")
    group_add.set_defaults(run=_group_add)
    alert = kiosk.add_parser(
        "alert", help="take over kiosks with an alert (asks the running server)"
    )
    alert.add_argument("--text", required=True, help="the headline")
    alert.add_argument("--detail", default="", help="more text under the headline")
    alert.add_argument("--group", action="append", help="kiosk group (repeatable); default: all")
    alert.add_argument("--expires", type=float, metavar="MINUTES", help="default: until cancelled")
    alert.set_defaults(run=_alert, direct=True)
    cancel = kiosk.add_parser("cancel", help="cancel a takeover alert (asks the running server)")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(run=_cancel, direct=True)


__all__ = ["add_cli"]
