"""Authentication and authorisation: staff logins, sessions, tokens, audit.

Passwords are hashed with Argon2id (a slow, memory-hard KDF) off the event
loop. Session cookies, API tokens and device tokens are random 256-bit values of
which only the SHA-256 is stored, so a database leak yields no usable secret.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database, utcnow
from core.models import ApiToken, AuditEntry, DeviceKind, DeviceToken, Role, User, WebSession

log = structlog.get_logger("auth")

_hasher = PasswordHasher()
# Verifying against this for unknown users makes both paths cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

MIN_PASSWORD_LENGTH = 8
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
# A session looked up this recently is trusted again by reads (GET, HEAD) without asking
# the database: a console player fetches a segment or playlist every few seconds. A
# logout here ends it at once; one ended elsewhere (another node, a disabled user, a
# deleted row) stops being served after this long at most. Writes always ask.
SESSION_CACHE_SECONDS = 5.0
SESSION_CACHE_ENTRIES = 10_000


class AuthError(Exception):
    """A credential was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Identity:
    """Who is making a request, and how they proved it."""

    subject: str
    role: Role | None
    via: str  # "session", "token" or "device"
    user_id: int | None = None
    device_kind: DeviceKind | None = None
    csrf_token: str | None = None

    def has_role(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or (self.role is not None and self.role in roles)


IDENTITY = web.RequestKey("identity", Identity)


def identity_of(request: web.Request) -> Identity | None:
    return request.get(IDENTITY)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


async def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(stored: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def audit(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str = "",
    source: str = "",
    **detail: Any,
) -> None:
    """Record a state-changing action in the same transaction as the change."""
    session.add(AuditEntry(actor=actor, action=action, target=target, source=source, detail=detail))
    log.info("audit", actor=actor, action=action, target=target, source=source, **detail)


class AuthService:
    def __init__(
        self,
        db: Database,
        *,
        max_failures: int = 5,
        lockout: dt.timedelta = dt.timedelta(minutes=15),
        session_lifetime: dt.timedelta = dt.timedelta(hours=12),
    ) -> None:
        self.db = db
        self.max_failures = max_failures
        self.lockout = lockout
        self.session_lifetime = session_lifetime
        # digest -> (monotonic time of the lookup, identity, session expiry)
        self._recent: dict[str, tuple[float, Identity, dt.datetime]] = {}
        self.monotonic = time.monotonic  # tests move it

    async def create_user(
        self,
        session: AsyncSession,
        username: str,
        password: str,
        role: Role,
        display_name: str = "",
    ) -> User:
        username = username.strip()
        if (
            not username
            or len(username) > 64
            or not username.replace("_", "").replace(".", "").replace("-", "").isalnum()
        ):
            raise ValueError("username must be 1-64 letters, digits, '.', '_' or '-'")
        existing = await session.scalar(select(User).where(User.username == username))
        if existing is not None:
            raise ValueError(f"user {username!r} already exists")
        user = User(
            username=username,
            display_name=display_name or username,
            role=role,
            password_hash=await hash_password(password),
            failed_logins=0,
            disabled=False,
        )
        session.add(user)
        await session.flush()
        return user

    async def set_password(self, session: AsyncSession, user: User, password: str) -> None:
        user.password_hash = await hash_password(password)
        user.failed_logins = 0
        user.locked_until = None

    async def authenticate(self, username: str, password: str, source: str = "") -> User:
        """Check a login; count failures and lock the account after too many.

        Failures are committed (audit row, counter) before the error is raised.
        """
        now = utcnow()
        refusal: AuthError | None = None
        async with self.db.session() as session:
            user = await session.scalar(select(User).where(User.username == username))
            if user is None or user.disabled:
                await _verify(_DUMMY_HASH, password)
                await audit(
                    session,
                    username or "?",
                    "auth.login_failed",
                    username,
                    source,
                    reason="unknown user",
                )
                refusal = AuthError("wrong username or password")
            elif user.locked_until is not None and _aware(user.locked_until) > now:
                await audit(
                    session, username, "auth.login_refused", username, source, reason="locked"
                )
                refusal = AuthError(
                    "too many failed logins: the account is locked for a while", 429
                )
            elif not await _verify(user.password_hash, password):
                user.failed_logins += 1
                locked = user.failed_logins >= self.max_failures
                if locked:
                    user.locked_until = now + self.lockout
                    user.failed_logins = 0
                await audit(
                    session,
                    username,
                    "auth.login_failed",
                    username,
                    source,
                    reason="wrong password",
                    locked=locked,
                )
                refusal = AuthError("wrong username or password")
            else:
                if _hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = await hash_password(password)
                user.failed_logins = 0
                user.locked_until = None
                user.last_login_at = now
                await audit(session, username, "auth.login", username, source)
        if refusal is not None:
            raise refusal
        assert user is not None
        return user

    async def open_session(self, user: User, source: str = "") -> tuple[str, WebSession]:
        cookie = new_secret()
        record = WebSession(
            id=token_digest(cookie),
            user_id=user.id,
            csrf_token=secrets.token_hex(32),
            expires_at=utcnow() + self.session_lifetime,
            source=source,
        )
        async with self.db.session() as session:
            session.add(record)
        return cookie, record

    async def close_session(self, cookie: str, actor: str, source: str = "") -> None:
        self._recent.pop(token_digest(cookie), None)
        async with self.db.session() as session:
            record = await session.get(WebSession, token_digest(cookie))
            if record is not None:
                await session.delete(record)
                await audit(session, actor, "auth.logout", actor, source)

    async def identify_session(self, cookie: str, *, recent: bool = False) -> Identity | None:
        """The session's identity, or None. ``recent``: a lookup of the last
        :data:`SESSION_CACHE_SECONDS` will do (reads only; see there)."""
        digest = token_digest(cookie)
        if recent and (known := self._recent.get(digest)) is not None:
            looked_up, identity, expires_at = known
            if self.monotonic() - looked_up < SESSION_CACHE_SECONDS and expires_at > utcnow():
                return identity
        self._recent.pop(digest, None)
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(WebSession, User)
                    .join(User, User.id == WebSession.user_id)
                    .where(WebSession.id == digest)
                )
            ).first()
            if row is None:
                return None
            record, user = row
            expires_at = _aware(record.expires_at)
            if expires_at <= utcnow() or user.disabled:
                await session.delete(record)
                return None
            identity = Identity(
                user.username, user.role, "session", user.id, csrf_token=record.csrf_token
            )
        if len(self._recent) >= SESSION_CACHE_ENTRIES:
            self._recent.clear()
        self._recent[digest] = (self.monotonic(), identity, expires_at)
        return identity

    async def issue_api_token(self, session: AsyncSession, user: User, name: str) -> str:
        token = "uc_" + new_secret()
        session.add(
            ApiToken(user_id=user.id, name=name, token_hash=token_digest(token), revoked=False)
        )
        return token

    async def issue_device_token(self, session: AsyncSession, kind: DeviceKind, name: str) -> str:
        token = "ud_" + new_secret()
        session.add(
            DeviceToken(kind=kind, name=name, token_hash=token_digest(token), revoked=False)
        )
        return token

    async def identify_token(self, token: str) -> Identity | None:
        digest = token_digest(token)
        async with self.db.session() as session:
            if token.startswith("ud_"):
                device = await session.scalar(
                    select(DeviceToken).where(
                        DeviceToken.token_hash == digest, DeviceToken.revoked.is_(False)
                    )
                )
                if device is None:
                    return None
                if _stale(device.last_used_at):
                    await session.execute(
                        update(DeviceToken)
                        .where(DeviceToken.id == device.id)
                        .values(last_used_at=utcnow())
                    )
                return Identity(device.name, None, "device", device_kind=device.kind)
            row = (
                await session.execute(
                    select(ApiToken, User)
                    .join(User, User.id == ApiToken.user_id)
                    .where(ApiToken.token_hash == digest, ApiToken.revoked.is_(False))
                )
            ).first()
            if row is None or row[1].disabled:
                return None
            api_token, user = row
            if _stale(api_token.last_used_at):
                api_token.last_used_at = utcnow()
            return Identity(user.username, user.role, "token", user.id)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def _stale(last_used: dt.datetime | None) -> bool:
    # "Last used" is for people reading the token list; a write per request would
    # turn every kiosk heartbeat and media fetch into a database write.
    return last_used is None or utcnow() - _aware(last_used) >= LAST_USED_RESOLUTION


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
