"""The aiohttp application: middlewares, the console shell, health, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select

from core.api import ApiError, ApiRegistry
from core.auth import IDENTITY, AuthError, Identity, audit, csrf_matches, identity_of, new_secret
from core.console import LOGIN_CSRF, Console
from core.context import AppContext
from core.i18n import COOKIE as LANG_COOKIE
from core.i18n import LANG, LANGUAGES, Translations, negotiate
from core.models import Department, Role, User
from core.services import discover_services

log = structlog.get_logger("web")

CTX = web.AppKey("ctx", AppContext)
API = web.AppKey("api", ApiRegistry)
CONSOLE = web.AppKey("console", Console)
I18N = web.AppKey("i18n", Translations)

SESSION_COOKIE = "unicomm_session"
LOGIN_CSRF_COOKIE = "unicomm_login_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
STATIC = Path(__file__).parent / "static"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def client_address(request: web.Request) -> str:
    return request.remote or ""


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("http.unhandled", method=request.method, path=request.path)
        if request.path.startswith("/api/"):
            raise ApiError(500, "internal error; the server logged the details") from None
        raise web.HTTPInternalServerError(text="internal error") from None


def metrics_middleware(ctx: AppContext) -> Middleware:
    requests = Counter(
        "unicomm_http_requests",
        "HTTP requests answered",
        ["method", "route", "status"],
        registry=ctx.metrics,
    )
    latency = Histogram(
        "unicomm_http_request_seconds", "HTTP request latency", ["route"], registry=ctx.metrics
    )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            # The client went away (aiohttp cancels the handler): not a server error.
            status = 499
            raise
        finally:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            elapsed = time.perf_counter() - started
            requests.labels(request.method, route, str(status)).inc()
            latency.labels(route).observe(elapsed)
            identity = identity_of(request)
            log.info(
                "http.request",
                method=request.method,
                path=request.path,
                status=status,
                who=identity.subject if identity else None,
                source=client_address(request),
                ms=round(elapsed * 1000, 1),
            )

    return middleware


def identity_middleware(ctx: AppContext) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[LANG] = negotiate(
            request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language")
        )
        identity: Identity | None = None
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            if (
                ctx.control_token
                and _is_loopback(request)
                and csrf_matches(ctx.control_token, token)
            ):
                identity = Identity("control", Role.ADMIN, "control")
            else:
                identity = await ctx.auth.identify_token(token)
            if identity is None:
                raise ApiError(401, "invalid or revoked token")
        elif cookie := request.cookies.get(SESSION_COOKIE):
            identity = await ctx.auth.identify_session(
                cookie, recent=request.method in SAFE_METHODS
            )
        if identity is not None:
            request[IDENTITY] = identity
        if (
            identity is not None
            and identity.via == "session"
            and request.method not in SAFE_METHODS
        ):
            given = request.headers.get("X-CSRF-Token")
            if given is None and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                given = str((await request.post()).get("csrf_token", ""))
            if not csrf_matches(identity.csrf_token, given):
                raise ApiError(403, "missing or wrong CSRF token")
        return await handler(request)

    return middleware


def _is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths: never an open redirect.
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _set_session_cookie(ctx: AppContext, response: web.StreamResponse, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="Lax",
        secure=ctx.settings.cookie_secure,
        max_age=int(ctx.settings.session_hours * 3600),
        path="/",
    )


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResult(BaseModel):
    username: str
    role: Role
    csrf_token: str


class Me(BaseModel):
    username: str
    role: Role | None
    via: str


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    display_name: str = Field("", max_length=200)


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    disabled: bool


class DepartmentIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    name_en: str = Field("", max_length=200)


class DepartmentOut(DepartmentIn):
    id: int


class Health(BaseModel):
    status: str
    database: str
    bus: str
    services: list[str]


def _mount_core_routes(app: web.Application, ctx: AppContext) -> None:
    api = app[API]
    console = app[CONSOLE]
    router = app.router

    async def healthz(request: web.Request) -> Health:
        try:
            await ctx.db.ping()
            database = "ok"
        except Exception as exc:
            database = f"error: {type(exc).__name__}"
        status = "ok" if database == "ok" else "degraded"
        return Health(
            status=status,
            database=database,
            bus="redis" if ctx.settings.redis_url else "in-process",
            services=[plugin.name for plugin in discover_services()],
        )

    api.add(
        router,
        "GET",
        "/healthz",
        healthz,
        summary="Liveness and storage check",
        tag="core",
        roles=None,
        response=Health,
    )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(ctx.metrics), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    router.add_get("/metrics", metrics)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(api.openapi("unicomm", version("unicomm")))

    router.add_get("/api/openapi.json", openapi)

    async def login_json(request: web.Request, body: LoginBody) -> web.StreamResponse:
        source = client_address(request)
        try:
            user = await ctx.auth.authenticate(body.username, body.password, source)
        except AuthError as exc:
            raise ApiError(exc.status, str(exc)) from None
        cookie, session = await ctx.auth.open_session(user, source)
        response = web.json_response(
            LoginResult(
                username=user.username, role=user.role, csrf_token=session.csrf_token
            ).model_dump(mode="json")
        )
        _set_session_cookie(ctx, response, cookie)
        return response

    api.add(
        router,
        "POST",
        "/api/auth/login",
        login_json,
        summary="Open a console session",
        tag="auth",
        roles=None,
        body=LoginBody,
        response=LoginResult,
    )

    async def me(request: web.Request, identity: Identity) -> Me:
        return Me(username=identity.subject, role=identity.role, via=identity.via)

    api.add(router, "GET", "/api/auth/me", me, summary="Who am I", tag="auth", response=Me)

    async def list_users(request: web.Request, identity: Identity) -> list[UserOut]:
        async with ctx.db.session() as session:
            users = (await session.scalars(select(User).order_by(User.username))).all()
        return [UserOut.model_validate(u, from_attributes=True) for u in users]

    api.add(
        router,
        "GET",
        "/api/users",
        list_users,
        summary="List staff logins",
        tag="auth",
        roles=(Role.ADMIN,),
        response=list[UserOut],
    )

    async def add_user(request: web.Request, identity: Identity, body: UserIn) -> UserOut:
        async with ctx.db.session() as session:
            try:
                user = await ctx.auth.create_user(
                    session, body.username, body.password, body.role, body.display_name
                )
            except ValueError as exc:
                raise ApiError(409 if "exists" in str(exc) else 422, str(exc)) from None
            await audit(
                session,
                identity.subject,
                "user.add",
                user.username,
                client_address(request),
                role=user.role.value,
            )
            return UserOut.model_validate(user, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/users",
        add_user,
        summary="Add a staff login",
        tag="auth",
        roles=(Role.ADMIN,),
        body=UserIn,
        response=UserOut,
        status=201,
    )

    async def list_departments(request: web.Request, identity: Identity) -> list[DepartmentOut]:
        async with ctx.db.session() as session:
            rows = (await session.scalars(select(Department).order_by(Department.code))).all()
        return [DepartmentOut.model_validate(d, from_attributes=True) for d in rows]

    api.add(
        router,
        "GET",
        "/api/departments",
        list_departments,
        summary="List departments",
        tag="directory",
        response=list[DepartmentOut],
    )

    async def add_department(
        request: web.Request, identity: Identity, body: DepartmentIn
    ) -> DepartmentOut:
        async with ctx.db.session() as session:
            if await session.scalar(select(Department).where(Department.code == body.code)):
                raise ApiError(409, f"department {body.code!r} already exists")
            department = Department(**body.model_dump())
            session.add(department)
            await session.flush()
            await audit(
                session, identity.subject, "department.add", body.code, client_address(request)
            )
            return DepartmentOut.model_validate(department, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/departments",
        add_department,
        summary="Add a department",
        tag="directory",
        roles=(Role.ADMIN, Role.OPERATOR),
        body=DepartmentIn,
        response=DepartmentOut,
        status=201,
    )

    async def login_page(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_secret()
        request[LOGIN_CSRF] = token
        response = await console.render(
            request,
            "login.html",
            {"error": None, "next": _safe_next(request.query.get("next")), "username": ""},
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/login"
        )
        return response

    async def login_form(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not csrf_matches(expected, str(form.get("csrf_token", ""))):
            raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the login page")
        username = str(form.get("username", ""))[:64]
        next_path = _safe_next(str(form.get("next", "")))
        source = client_address(request)
        try:
            user = await ctx.auth.authenticate(
                username, str(form.get("password", ""))[:1024], source
            )
        except AuthError as exc:
            request[LOGIN_CSRF] = expected or ""
            message = "login.locked" if exc.status == 429 else "login.failed"
            return await console.render(
                request,
                "login.html",
                {"error": message, "next": next_path, "username": username},
                status=exc.status,
            )
        cookie, _ = await ctx.auth.open_session(user, source)
        response = web.HTTPFound(next_path)
        _set_session_cookie(ctx, response, cookie)
        response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
        raise response

    router.add_get("/login", login_page)
    router.add_post("/login", login_form)

    async def logout(request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        identity = identity_of(request)
        if cookie and identity is not None:
            await ctx.auth.close_session(cookie, identity.subject, client_address(request))
        response = web.HTTPFound("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    router.add_post("/logout", logout)

    async def switch_language(request: web.Request) -> web.StreamResponse:
        lang = request.query.get("to", "")
        if lang not in LANGUAGES:
            raise web.HTTPBadRequest(text=f"language must be one of {', '.join(LANGUAGES)}")
        response = web.HTTPFound(_safe_next(request.query.get("next")))
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="Lax", path="/")
        raise response

    router.add_get("/lang", switch_language)

    async def home(request: web.Request) -> web.StreamResponse:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound("/login")
        return await console.render(request, "home.html", {})

    router.add_get("/", home)
    router.add_static("/static/", STATIC)


def create_app(ctx: AppContext) -> web.Application:
    """Build the application and mount every discovered service on it."""
    app = web.Application(
        middlewares=[errors_middleware, metrics_middleware(ctx), identity_middleware(ctx)],  # type: ignore[list-item]
        client_max_size=1024 * 1024,
    )
    translations = Translations()
    app[CTX] = ctx
    app[API] = ApiRegistry()
    app[I18N] = translations
    app[CONSOLE] = Console(translations)
    _mount_core_routes(app, ctx)
    for plugin in discover_services():
        plugin.module.setup(app)
        log.debug("service.mounted", service=plugin.name)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await ctx.start()
        ctx.write_control_token()
        yield
        await ctx.close()

    app.cleanup_ctx.insert(0, lifecycle)
    return app
