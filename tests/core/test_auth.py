"""Auth through the HTTP API a browser or script uses."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from core.auth import SESSION_CACHE_SECONDS
from core.context import AppContext
from core.models import AuditEntry, DeviceKind, DeviceToken, Role, User


async def add_user(ctx: AppContext, name: str, role: Role, password: str = "correct-horse") -> None:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, name, password, role)


async def login(client: TestClient, name: str, password: str = "correct-horse") -> str:
    response = await client.post("/api/auth/login", json={"username": name, "password": password})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["csrf_token"]
    return token


async def audit_actions(ctx: AppContext) -> list[tuple[str, str]]:
    async with ctx.db.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return [(row.action, row.target) for row in rows]


async def test_wrong_password_is_refused_and_audited(
    client: TestClient, app_context: AppContext
) -> None:
    await add_user(app_context, "alice", Role.OPERATOR)
    response = await client.post(
        "/api/auth/login", json={"username": "alice", "password": "nope-nope"}
    )
    assert response.status == 401
    assert (await response.json())["error"] == "wrong username or password"
    unknown = await client.post(
        "/api/auth/login", json={"username": "nobody", "password": "nope-nope"}
    )
    assert unknown.status == 401
    assert (await unknown.json())["error"] == "wrong username or password"
    assert ("auth.login_failed", "alice") in await audit_actions(app_context)


async def test_lockout_after_repeated_failures(client: TestClient, app_context: AppContext) -> None:
    await add_user(app_context, "bob", Role.STAFF)
    for _ in range(app_context.settings.login_max_failures):
        response = await client.post(
            "/api/auth/login", json={"username": "bob", "password": "wrong-one"}
        )
        assert response.status == 401
    locked = await client.post(
        "/api/auth/login", json={"username": "bob", "password": "correct-horse"}
    )
    assert locked.status == 429
    assert "locked" in (await locked.json())["error"]
    async with app_context.db.session() as session:
        user = await session.scalar(select(User).where(User.username == "bob"))
        assert user is not None and user.locked_until is not None


async def test_role_denied_with_403(client: TestClient, app_context: AppContext) -> None:
    await add_user(app_context, "duty", Role.DUTY_OFFICER)
    csrf = await login(client, "duty")
    response = await client.post(
        "/api/users",
        json={"username": "eve", "password": "long-enough", "role": "admin"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 403
    assert (await client.get("/api/users")).status == 403
    anonymous = await client.session.get(client.make_url("/api/users"), cookies={})
    assert anonymous.status in (401, 403)


async def test_csrf_token_required_for_session_writes(
    client: TestClient, app_context: AppContext
) -> None:
    await add_user(app_context, "root", Role.ADMIN)
    csrf = await login(client, "root")
    body = {"username": "carol", "password": "long-enough", "role": "staff"}
    assert (await client.post("/api/users", json=body)).status == 403
    assert (
        await client.post("/api/users", json=body, headers={"X-CSRF-Token": "forged"})
    ).status == 403
    created = await client.post("/api/users", json=body, headers={"X-CSRF-Token": csrf})
    assert created.status == 201, await created.text()
    assert ("user.add", "carol") in await audit_actions(app_context)


async def test_invalid_bodies_get_clear_errors(client: TestClient, app_context: AppContext) -> None:
    await add_user(app_context, "root", Role.ADMIN)
    csrf = await login(client, "root")
    headers = {"X-CSRF-Token": csrf}
    bad_role = await client.post(
        "/api/users",
        json={"username": "x", "password": "long-enough", "role": "king"},
        headers=headers,
    )
    assert bad_role.status == 422
    assert (await bad_role.json())["detail"][0]["field"] == "role"
    not_json = await client.post(
        "/api/users", data=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert not_json.status == 400
    as_form = await client.post("/api/users", data={"username": "x"}, headers=headers)
    assert as_form.status == 415


async def test_api_token_works_without_csrf(client: TestClient, app_context: AppContext) -> None:
    async with app_context.db.session() as session:
        user = await app_context.auth.create_user(session, "robot", "correct-horse", Role.ADMIN)
        token = await app_context.auth.issue_api_token(session, user, "ci")
    headers = {"Authorization": f"Bearer {token}"}
    created = await client.post(
        "/api/departments", json={"code": "EMERG", "name": "应急管理局"}, headers=headers
    )
    assert created.status == 201
    assert (await client.get("/api/auth/me", headers=headers)).status == 200
    bad = await client.get("/api/auth/me", headers={"Authorization": "Bearer uc_forged"})
    assert bad.status == 401


async def test_console_form_login_checks_its_csrf_cookie(
    client: TestClient, app_context: AppContext
) -> None:
    await add_user(app_context, "dora", Role.STAFF)
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token is not None
    forged = await client.post(
        "/login",
        data={"username": "dora", "password": "correct-horse", "csrf_token": "x"},
        allow_redirects=False,
    )
    assert forged.status == 403
    ok = await client.post(
        "/login",
        data={
            "username": "dora",
            "password": "correct-horse",
            "csrf_token": token.group(1),
            "next": "/",
        },
        allow_redirects=False,
    )
    assert ok.status == 302 and ok.headers["Location"] == "/"
    home = await client.get("/")
    assert home.status == 200 and "dora" in await home.text()
    logout_without_token = await client.post("/logout", data={}, allow_redirects=False)
    assert logout_without_token.status == 403


async def test_device_token_last_use_is_recorded_without_a_write_per_request(
    app_context: AppContext,
) -> None:
    async with app_context.db.session() as session:
        token = await app_context.auth.issue_device_token(session, DeviceKind.KIOSK, "kiosk-1")

    async def last_used() -> dt.datetime | None:
        async with app_context.db.session() as session:
            device = await session.scalar(select(DeviceToken).where(DeviceToken.name == "kiosk-1"))
            assert device is not None
            return device.last_used_at

    assert await app_context.auth.identify_token(token) is not None
    first = await last_used()
    assert first is not None
    assert await app_context.auth.identify_token(token) is not None
    assert await last_used() == first  # a second request a moment later writes nothing

    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    async with app_context.db.session() as session:
        await session.execute(update(DeviceToken).values(last_used_at=an_hour_ago))
    assert await app_context.auth.identify_token(token) is not None
    refreshed = await last_used()
    assert refreshed is not None and refreshed.replace(tzinfo=dt.UTC) > an_hour_ago.replace(
        tzinfo=dt.UTC
    ) + dt.timedelta(minutes=59)


async def test_a_session_is_looked_up_again_by_writes_and_after_a_few_seconds(
    client: TestClient, app_context: AppContext
) -> None:
    now = [1000.0]
    app_context.auth.monotonic = lambda: now[0]
    await add_user(app_context, "dora", Role.OPERATOR)
    await add_user(app_context, "erin", Role.OPERATOR)
    await login(client, "dora")
    assert (await client.get("/api/auth/me")).status == 200

    # Disabled elsewhere (another node, the database): reads are served from the lookup
    # of the last few seconds, then refused.
    async with app_context.db.session() as session:
        await session.execute(update(User).where(User.username == "dora").values(disabled=True))
    now[0] += SESSION_CACHE_SECONDS - 0.5
    assert (await client.get("/api/auth/me")).status == 200
    now[0] += 1.0
    assert (await client.get("/api/auth/me")).status == 401

    # Writes always ask the database.
    csrf = await login(client, "erin")
    assert (await client.get("/api/auth/me")).status == 200
    async with app_context.db.session() as session:
        await session.execute(update(User).where(User.username == "erin").values(disabled=True))
    write = await client.post(
        "/api/departments", json={"code": "X", "name": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert write.status == 401

    # A logout on this node ends the session for reads at once.
    async with app_context.db.session() as session:
        await session.execute(update(User).where(User.username == "erin").values(disabled=False))
    csrf = await login(client, "erin")
    assert (await client.get("/api/auth/me")).status == 200
    await client.post("/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert (await client.get("/api/auth/me")).status == 401
