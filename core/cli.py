"""The ``unicomm`` command. Errors are one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from core import migrations
from core.auth import audit
from core.config import ConfigError, Settings, load_settings
from core.context import CONTROL_TOKEN_FILE, AppContext
from core.logs import configure_logging
from core.models import Department, Role, User
from core.services import discover_services

log = structlog.get_logger("cli")

Command = Callable[[AppContext, argparse.Namespace], Awaitable[int | None]]

CLI_ACTOR = "cli"

DEMO_DEPARTMENTS = [
    ("MAYOR", "市长办公室", "Mayor's Office"),
    ("EMERG", "应急管理局", "Emergency Management Bureau"),
    ("FIN", "财政局", "Finance Bureau"),
    ("IT", "大数据中心", "Big Data Centre"),
]


class CliError(Exception):
    """A command failed in a way the user can fix; the message says how."""


class DemoReport:
    """What ``unicomm demo`` tells the newcomer: logins, extensions, where to go.

    ``credentials`` persists generated demo secrets under ``data_dir`` so that a
    second ``make run`` prints the same ones instead of resetting them.
    """

    def __init__(self, credentials: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.credentials = credentials

    def add(self, line: str) -> None:
        self.lines.append(line)

    def secret(self, key: str, create: Callable[[], str]) -> str:
        if key not in self.credentials:
            self.credentials[key] = create()
        return self.credentials[key]

    def new_password(self) -> str:
        return _new_password()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unicomm", description="Unified communications server")
    parser.add_argument("--config", help="path of unicomm.toml (default: $UNICOMM_CONFIG)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.set_defaults(run=_serve, direct=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply all migrations").set_defaults(run=_db_upgrade, direct=True)

    user = commands.add_parser("user", help="staff logins").add_subparsers(
        dest="user_command", required=True
    )
    user_add = user.add_parser("add", help="add a staff login")
    user_add.add_argument("name")
    user_add.add_argument("--role", required=True, choices=[r.value for r in Role])
    user_add.add_argument(
        "--password", help="prompted for when omitted on a terminal, generated otherwise"
    )
    user_add.add_argument("--display-name", default="")
    user_add.set_defaults(run=_user_add)
    user.add_parser("list", help="list staff logins").set_defaults(run=_user_list)

    token = commands.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    token_add = token.add_parser("add", help="issue an API token for a staff login")
    token_add.add_argument("user")
    token_add.add_argument("--name", default="cli")
    token_add.set_defaults(run=_token_add)

    dept = commands.add_parser("dept", help="departments").add_subparsers(
        dest="dept_command", required=True
    )
    dept_add = dept.add_parser("add", help="add a department")
    dept_add.add_argument("code")
    dept_add.add_argument("--name", required=True)
    dept_add.add_argument("--name-en", default="")
    dept_add.set_defaults(run=_dept_add)
    dept.add_parser("list", help="list departments").set_defaults(run=_dept_list)

    commands.add_parser("demo", help="seed the demo directory and print its logins").set_defaults(
        run=_demo, direct=True
    )

    for plugin in discover_services():
        hook = plugin.hook("add_cli")
        if hook is not None:
            hook(commands)
    return parser


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from core.web import create_app

    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    app = create_app(ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    tune_gc()
    log.info(
        "serve.started",
        http=f"http://{settings.http_host}:{settings.http_port}/",
        data_dir=str(settings.data_dir),
        database=ctx.db.backend,
        bus="redis" if settings.redis_url else "in-process",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("serve.stopping")
    await runner.cleanup()
    return 0


async def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    await migrations.upgrade_async(settings.database_url)
    print(f"database at head: {_describe_url(settings.database_url)}")
    return 0


def _new_password() -> str:
    return secrets.token_urlsafe(9)


async def _user_add(ctx: AppContext, args: argparse.Namespace) -> int:
    password = args.password
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.name}: ")
        else:
            password, generated = _new_password(), True
    async with ctx.db.session() as session:
        try:
            user = await ctx.auth.create_user(
                session, args.name, password, Role(args.role), args.display_name
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "user.add", user.username, role=user.role.value)
    print(f"added {args.name} ({args.role})" + (f" with password {password}" if generated else ""))
    return 0


async def _user_list(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        for user in await session.scalars(select(User).order_by(User.username)):
            state = " (disabled)" if user.disabled else ""
            print(f"{user.username}\t{user.role.value}\t{user.display_name}{state}")
    return 0


async def _token_add(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        user = await session.scalar(select(User).where(User.username == args.user))
        if user is None:
            raise CliError(f"no staff login named {args.user!r}")
        token = await ctx.auth.issue_api_token(session, user, args.name)
        await audit(session, CLI_ACTOR, "token.add", user.username, name=args.name)
    print(token)
    return 0


async def _dept_add(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        if await session.scalar(select(Department).where(Department.code == args.code)):
            raise CliError(f"department {args.code!r} already exists")
        session.add(Department(code=args.code, name=args.name, name_en=args.name_en))
        await audit(session, CLI_ACTOR, "department.add", args.code)
    print(f"added department {args.code}")
    return 0


async def _dept_list(ctx: AppContext, args: argparse.Namespace) -> int:
    async with ctx.db.session() as session:
        for dept in await session.scalars(select(Department).order_by(Department.code)):
            print(f"{dept.code}\t{dept.name}\t{dept.name_en}")
    return 0


async def _ensure_login(
    ctx: AppContext, username: str, role: Role, display: str, saved: dict[str, str]
) -> str:
    async with ctx.db.session() as session:
        if await session.scalar(select(User).where(User.username == username)) is None:
            password = _new_password()
            await ctx.auth.create_user(session, username, password, role, display)
            await audit(session, CLI_ACTOR, "user.add", username, role=role.value, demo=True)
            saved[username] = password
    return saved.get(username, "(changed since the demo was seeded)")


def _read_saved(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)
    return {name: password for name, password in pairs}


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    try:
        credentials_file = settings.path("demo-credentials.txt")
        saved = _read_saved(credentials_file)
        async with ctx.db.session() as session:
            for code, name, name_en in DEMO_DEPARTMENTS:
                if await session.scalar(select(Department).where(Department.code == code)) is None:
                    session.add(Department(code=code, name=name, name_en=name_en))
        admin = await _ensure_login(ctx, "admin", Role.ADMIN, "系统管理员 Administrator", saved)
        duty = await _ensure_login(ctx, "duty", Role.DUTY_OFFICER, "值班员 Duty officer", saved)
        report = DemoReport(saved)
        for plugin in discover_services():
            hook = plugin.hook("seed_demo")
            if hook is not None:
                await hook(ctx, report)
        credentials_file.touch(mode=0o600)
        credentials_file.write_text("".join(f"{k}\t{v}\n" for k, v in saved.items()))
    finally:
        await ctx.close()
    url = f"http://localhost:{settings.http_port}/"
    print("unicomm demo directory")
    print(f"  console      {url}")
    print(f"  admin        admin / {admin}")
    print(f"  duty officer duty / {duty}")
    for line in report.lines:
        print(f"  {line}")
    return 0


async def ask_server(settings: Settings, method: str, path: str) -> Any:
    """Call the running server's JSON API from a local command (see the control token)."""
    token_file = settings.path(CONTROL_TOKEN_FILE)
    url = f"http://127.0.0.1:{settings.http_port}{path}"
    if not token_file.exists():
        raise CliError(
            f"the server is not running (no {token_file}); start it with `unicomm serve`"
        )
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=headers) as response,
        ):
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise CliError(f"server answered {response.status}: {body.get('error', body)}")
            return body
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach the server at {url}: {exc}") from None


def _describe_url(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def _run_with_context(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    ctx = AppContext.create(settings)
    try:
        return await command(ctx, args) or 0
    finally:
        await ctx.close()


def tune_gc() -> None:
    """Garbage collection for a long-running server (measured with bench/sip_cpu.py).

    Everything loaded at start (modules, the app) is frozen out of the collector's
    scans, and young objects are collected every 10,000 allocations instead of 700:
    the SIP call path allocates many short-lived objects, and the default thresholds
    made collection about a third of its CPU time.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(
            settings.log_level if args.command == "serve" else "WARNING", settings.log_format
        )
        runner: Any
        if getattr(args, "direct", False):
            runner = args.run(settings, args)
        else:
            runner = _run_with_context(settings, args.run, args)
        return int(asyncio.run(runner))
    except (ConfigError, CliError) as exc:
        print(f"unicomm: error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig) if exc.orig is not None else str(exc)
        if "no such table" in text or "does not exist" in text:
            print(
                "unicomm: error: the database has no schema yet; run `unicomm db upgrade`",
                file=sys.stderr,
            )
        else:
            print(f"unicomm: error: database: {text.splitlines()[0]}", file=sys.stderr)
        return 1
    except (DBAPIError, OSError) as exc:
        print(f"unicomm: error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
