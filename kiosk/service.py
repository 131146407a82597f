"""Kiosk logic, free of HTTP: content, media, playlists, groups, pairing, fleet, alerts, feed.

Every function takes an open session (the caller owns the transaction, so an error
leaves nothing half-written) and raises :class:`KioskError` with a message a person
can act on; the API turns it into a status code, the CLI into one line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import html.parser
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import AuthService, token_digest
from core.db import utcnow
from core.models import DeviceKind, DeviceToken
from kiosk import rules
from kiosk.models import (
    Alert,
    ContentItem,
    Kiosk,
    KioskGroup,
    KioskMedia,
    Pairing,
    Playlist,
    PlayRecord,
)
from kiosk.rules import ContentKind, Placement, RuleError, Target, Window

CATEGORY_PATTERN = re.compile(r"^[a-z0-9_-]{1,32}$")
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# No 0/O, 1/I/L: a citizen-facing screen, read aloud over the phone to an operator.
PAIRING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
PAIRING_CODE_LENGTH = 6
TOKEN_NAME_PREFIX = "kiosk:"

# What an upload may be, recognised by its first bytes, not by what the client claims.
MEDIA_SIGNATURES: dict[str, tuple[ContentKind, str, tuple[bytes, ...]]] = {
    "image/png": (ContentKind.IMAGE, "png", (b"\x89PNG\r\n\x1a\n",)),
    "image/jpeg": (ContentKind.IMAGE, "jpg", (b"\xff\xd8\xff",)),
    "image/webp": (ContentKind.IMAGE, "webp", (b"RIFF",)),
    "video/webm": (ContentKind.VIDEO, "webm", (b"\x1a\x45\xdf\xa3",)),
    "video/mp4": (ContentKind.VIDEO, "mp4", ()),  # checked by its ftyp box below
}


# The fleet board's picture of a kiosk's screen: a small image, refused past this size.
SCREENSHOT_MAX_BYTES = 64 * 1024
SCREENSHOT_URL = re.compile(r"^data:(image/(?:jpeg|png|webp));base64,([A-Za-z0-9+/]*={0,2})$")


class KioskError(Exception):
    """A refusal; ``status`` is the HTTP status it maps to, ``field`` the input at fault."""

    def __init__(self, message: str, status: int = 422, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


# ---------------------------------------------------------------- groups


async def add_group(
    session: AsyncSession, code: str, name: str, district: str = "", street: str = ""
) -> KioskGroup:
    if not CODE_PATTERN.match(code):
        raise KioskError("a group code is 1-32 letters, digits, '_' or '-'", field="code")
    if not name.strip():
        raise KioskError("a group needs a name", field="name")
    if await session.scalar(select(KioskGroup).where(KioskGroup.code == code)):
        raise KioskError(f"group {code!r} already exists", 409, "code")
    group = KioskGroup(
        code=code, name=name.strip(), district=district.strip(), street=street.strip()
    )
    session.add(group)
    await session.flush()
    return group


async def group_by_code(session: AsyncSession, code: str) -> KioskGroup:
    group = await session.scalar(select(KioskGroup).where(KioskGroup.code == code))
    if group is None:
        raise KioskError(f"no kiosk group {code!r}", 404, "group")
    return group


async def list_groups(session: AsyncSession) -> Sequence[KioskGroup]:
    return (await session.scalars(select(KioskGroup).order_by(KioskGroup.code))).all()


# ---------------------------------------------------------------- media


def sniff_media(head: bytes, declared: str) -> tuple[ContentKind, str]:
    """The kind and file extension of an upload whose first bytes match its declared type."""
    entry = MEDIA_SIGNATURES.get(declared.split(";")[0].strip().lower())
    if entry is None:
        allowed = ", ".join(MEDIA_SIGNATURES)
        raise KioskError(
            f"media must be one of {allowed}; got {declared or 'no type'}", 415, "file"
        )
    kind, extension, magics = entry
    if extension == "mp4":
        matches = head[4:8] == b"ftyp"
    elif extension == "webp":
        matches = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    else:
        matches = any(head.startswith(magic) for magic in magics)
    if not matches:
        raise KioskError(f"the file's content is not {declared}", 415, "file")
    return kind, extension


async def store_media(
    session: AsyncSession,
    media_dir: Path,
    chunks: AsyncIterator[bytes],
    declared_type: str,
    original_name: str,
    max_bytes: int,
) -> KioskMedia:
    """Stream an upload to disk, checking type and size as it arrives.

    It is written to a temporary file and renamed only when complete and valid,
    so a refused or broken upload leaves no file and no row.
    """
    await asyncio.to_thread(media_dir.mkdir, parents=True, exist_ok=True)
    temporary = media_dir / f".upload-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    size = 0
    head = b""
    kind_ext: tuple[ContentKind, str] | None = None
    try:
        with temporary.open("wb") as handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise KioskError(
                        f"media larger than {max_bytes // (1024 * 1024)} MB", 413, "file"
                    )
                if kind_ext is None:
                    head += chunk
                    if len(head) >= 16:
                        kind_ext = sniff_media(head, declared_type)
                digest.update(chunk)
                # Off the loop: a slow disk must not stall every other request.
                await asyncio.to_thread(handle.write, chunk)
        if size == 0:
            raise KioskError("the upload is empty", 400, "file")
        if kind_ext is None:
            kind_ext = sniff_media(head, declared_type)
        sha = digest.hexdigest()
        existing = await session.scalar(select(KioskMedia).where(KioskMedia.sha256 == sha))
        if existing is not None:
            return existing
        file_name = f"{sha}.{kind_ext[1]}"
        os.replace(temporary, media_dir / file_name)
        media = KioskMedia(
            sha256=sha,
            file_name=file_name,
            original_name=original_name[:200],
            content_type=declared_type.split(";")[0].strip().lower(),
            size=size,
        )
        session.add(media)
        await session.flush()
        return media
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------- content


@dataclass
class ItemInput:
    """A content item as an operator describes it (validated by :func:`check_item`)."""

    kind: ContentKind
    category: str
    title_zh: str
    title_en: str = ""
    body_zh: str = ""
    body_en: str = ""
    steps: Sequence[Mapping[str, str]] = ()  # guide: [{"zh": ..., "en": ...}]
    documents: Sequence[Mapping[str, str]] = ()  # guide: required documents
    media_id: int | None = None  # image, video
    vod_key: str = ""  # news
    portal_url: str = ""  # portal
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


def check_window(starts: dt.datetime | None, ends: dt.datetime | None) -> Window:
    try:
        return Window(starts, ends)
    except RuleError as exc:
        raise KioskError(str(exc), field="valid_until") from None


async def _details(session: AsyncSession, data: ItemInput) -> dict[str, Any]:
    if not data.title_zh.strip():
        raise KioskError("a title in Chinese is required", field="title_zh")
    if not CATEGORY_PATTERN.match(data.category):
        raise KioskError(
            "a category is 1-32 lower-case letters, digits, '_' or '-'", field="category"
        )
    details: dict[str, Any] = {}
    if data.kind is ContentKind.GUIDE:
        if not data.steps:
            raise KioskError("a service guide needs at least one step", field="steps")
        details["steps"] = [_bilingual(step, "steps") for step in data.steps]
        details["documents"] = [_bilingual(doc, "documents") for doc in data.documents]
    elif data.kind in (ContentKind.IMAGE, ContentKind.VIDEO):
        media = await session.get(KioskMedia, data.media_id) if data.media_id else None
        if media is None:
            raise KioskError(
                f"an {data.kind.value} item needs an uploaded media_id", field="media_id"
            )
        wanted = "image/" if data.kind is ContentKind.IMAGE else "video/"
        if not media.content_type.startswith(wanted):
            raise KioskError(
                f"media {media.id} is {media.content_type}, not {wanted}*", field="media_id"
            )
        details["media_id"] = media.id
    elif data.kind is ContentKind.NEWS:
        if not re.match(r"^[A-Za-z0-9_.-]{1,100}$", data.vod_key):
            raise KioskError("a news clip needs the key of a VOD catalogue item", field="vod_key")
        details["vod_key"] = data.vod_key
    elif data.kind is ContentKind.PORTAL:
        if not re.match(r"^https?://[^\s]{1,500}$", data.portal_url):
            raise KioskError("a portal page needs an http(s) URL", field="portal_url")
        details["portal_url"] = data.portal_url
    return details


def _bilingual(value: Mapping[str, str], field_name: str) -> dict[str, str]:
    zh = str(value.get("zh", "")).strip()
    if not zh:
        raise KioskError(f"every entry of {field_name} needs Chinese text", field=field_name)
    return {"zh": zh, "en": str(value.get("en", "")).strip()}


async def create_item(session: AsyncSession, data: ItemInput) -> ContentItem:
    check_window(data.valid_from, data.valid_until)
    item = ContentItem(
        kind=data.kind.value,
        category=data.category,
        title_zh=data.title_zh.strip(),
        title_en=data.title_en.strip(),
        body_zh=data.body_zh,
        body_en=data.body_en,
        details=await _details(session, data),
        valid_from=data.valid_from,
        valid_until=data.valid_until,
    )
    session.add(item)
    await session.flush()
    return item


async def update_item(session: AsyncSession, item_id: int, data: ItemInput) -> ContentItem:
    item = await get_item(session, item_id)
    check_window(data.valid_from, data.valid_until)
    details = await _details(session, data)
    if data.kind is ContentKind.PORTAL and item.details.get("portal_url") == data.portal_url:
        # Keep the cached copy of the same page.
        details.update({k: v for k, v in item.details.items() if k.startswith("portal_")})
    item.kind = data.kind.value
    item.category = data.category
    item.title_zh, item.title_en = data.title_zh.strip(), data.title_en.strip()
    item.body_zh, item.body_en = data.body_zh, data.body_en
    item.details = details
    item.valid_from, item.valid_until = data.valid_from, data.valid_until
    item.updated_at = utcnow()
    return item


async def get_item(session: AsyncSession, item_id: int) -> ContentItem:
    item = await session.get(ContentItem, item_id)
    if item is None:
        raise KioskError(f"no content item {item_id}", 404)
    return item


async def delete_item(session: AsyncSession, item_id: int) -> None:
    item = await get_item(session, item_id)
    for playlist in (await session.scalars(select(Playlist))).all():
        if item_id in playlist.item_ids:
            playlist.item_ids = [i for i in playlist.item_ids if i != item_id]
    await session.delete(item)


async def is_news_on_kiosks(session: AsyncSession, key: str) -> bool:
    """Whether an operator made this VOD item a kiosk news clip.

    Kiosk routes are public: only clips chosen for kiosks get a signed link there,
    not the whole catalogue of whoever guesses a key.
    """
    news = await session.scalars(select(ContentItem).where(ContentItem.kind == ContentKind.NEWS))
    return any(item.details.get("vod_key") == key for item in news)


async def list_items(session: AsyncSession) -> Sequence[ContentItem]:
    return (await session.scalars(select(ContentItem).order_by(ContentItem.id))).all()


class _TextOfPage(html.parser.HTMLParser):
    """The title and readable text of a portal page; scripts and styles dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.parts: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._skip:
            self._skip -= 1
        if tag in ("p", "div", "li", "h1", "h2", "h3", "br", "tr"):
            self.parts.append("\n")
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        else:
            self.parts.append(data)


def portal_text(page: str) -> tuple[str, str]:
    """(title, text) of a portal page: text only, so nothing of the page can run on a kiosk."""
    parser = _TextOfPage()
    parser.feed(page)
    lines = (
        re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n")
    )
    return parser.title.strip(), "\n".join(line for line in lines if line)[:20000]


def cache_portal_page(item: ContentItem, page: str, fetched_at: dt.datetime) -> None:
    title, text = portal_text(page)
    item.details = {
        **item.details,
        "portal_title": title,
        "portal_text": text,
        "portal_fetched_at": fetched_at.isoformat(),
    }
    item.updated_at = fetched_at


# ---------------------------------------------------------------- playlists


@dataclass
class PlaylistInput:
    name: str
    item_ids: Sequence[int]
    rules: Sequence[Mapping[str, Any]] = ()
    groups: Sequence[str] = ()
    districts: Sequence[str] = ()
    streets: Sequence[str] = ()
    priority: int = 0


async def _playlist_values(session: AsyncSession, data: PlaylistInput) -> dict[str, Any]:
    if not data.name.strip():
        raise KioskError("a playlist needs a name", field="name")
    try:
        parsed = [rules.ScheduleRule.from_json(rule) for rule in data.rules]
    except RuleError as exc:
        raise KioskError(f"schedule: {exc}", field="rules") from None
    known = set((await session.scalars(select(ContentItem.id))).all())
    unknown = [i for i in data.item_ids if i not in known]
    if unknown:
        raise KioskError(f"no content items {unknown}", field="item_ids")
    codes = set((await session.scalars(select(KioskGroup.code))).all())
    missing = [code for code in data.groups if code not in codes]
    if missing:
        raise KioskError(f"no kiosk groups {missing}", field="groups")
    return {
        "name": data.name.strip(),
        "item_ids": list(dict.fromkeys(data.item_ids)),
        "rules": [rule.to_json() for rule in parsed],
        "target": _target_json(data.groups, data.districts, data.streets),
        "priority": data.priority,
        "updated_at": utcnow(),
    }


def _target_json(
    groups: Sequence[str], districts: Sequence[str], streets: Sequence[str]
) -> dict[str, list[str]]:
    return {
        "groups": sorted(set(groups)),
        "districts": sorted(set(districts)),
        "streets": sorted(set(streets)),
    }


def target_of(value: Mapping[str, Sequence[str]]) -> Target:
    return Target(
        frozenset(value.get("groups", ())),
        frozenset(value.get("districts", ())),
        frozenset(value.get("streets", ())),
    )


async def create_playlist(session: AsyncSession, data: PlaylistInput) -> Playlist:
    values = await _playlist_values(session, data)
    if await session.scalar(select(Playlist).where(Playlist.name == values["name"])):
        raise KioskError(f"playlist {values['name']!r} already exists", 409, "name")
    playlist = Playlist(**values)
    session.add(playlist)
    await session.flush()
    return playlist


async def update_playlist(session: AsyncSession, playlist_id: int, data: PlaylistInput) -> Playlist:
    playlist = await session.get(Playlist, playlist_id)
    if playlist is None:
        raise KioskError(f"no playlist {playlist_id}", 404)
    for key, value in (await _playlist_values(session, data)).items():
        setattr(playlist, key, value)
    return playlist


async def delete_playlist(session: AsyncSession, playlist_id: int) -> None:
    playlist = await session.get(Playlist, playlist_id)
    if playlist is None:
        raise KioskError(f"no playlist {playlist_id}", 404)
    await session.delete(playlist)


async def list_playlists(session: AsyncSession) -> Sequence[Playlist]:
    return (
        await session.scalars(select(Playlist).order_by(Playlist.priority.desc(), Playlist.id))
    ).all()


# ---------------------------------------------------------------- pairing and fleet


@dataclass(frozen=True)
class PairingStart:
    code: str
    claim: str
    expires_at: dt.datetime


async def start_pairing(session: AsyncSession, lifetime: dt.timedelta, source: str) -> PairingStart:
    """A new code for a kiosk screen; old unclaimed codes are swept on the way."""
    now = utcnow()
    await session.execute(
        Pairing.__table__.delete().where(Pairing.expires_at < now - dt.timedelta(days=1))
    )
    claim = secrets.token_urlsafe(32)
    for _ in range(10):
        code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))
        if await session.scalar(select(Pairing.id).where(Pairing.code == code)) is None:
            break
    pairing = Pairing(
        code=code, claim_hash=token_digest(claim), expires_at=now + lifetime, source=source
    )
    session.add(pairing)
    await session.flush()
    return PairingStart(code, claim, pairing.expires_at)


def normalise_code(code: str) -> str:
    return code.strip().upper().replace(" ", "").replace("-", "")


async def approve_pairing(
    session: AsyncSession, code: str, name: str, group_code: str | None
) -> Kiosk:
    """An operator accepts the code shown on a kiosk; the kiosk collects its token next."""
    pairing = await session.scalar(select(Pairing).where(Pairing.code == normalise_code(code)))
    if pairing is None:
        raise KioskError(f"no kiosk is showing the pairing code {code!r}", 404, "code")
    if pairing.kiosk_id is not None:
        raise KioskError(f"pairing code {code!r} was already approved", 409, "code")
    if _aware(pairing.expires_at) <= utcnow():
        raise KioskError(
            f"pairing code {code!r} has expired; the kiosk shows a new one", 410, "code"
        )
    name = name.strip()
    if not name or len(name) > 100:
        raise KioskError("a kiosk needs a name of 1-100 characters", field="name")
    if await session.scalar(select(Kiosk.id).where(Kiosk.name == name)) is not None:
        raise KioskError(f"a kiosk named {name!r} already exists", 409, "name")
    group = await group_by_code(session, group_code) if group_code else None
    kiosk = Kiosk(name=name, group_id=group.id if group else None, source=pairing.source)
    session.add(kiosk)
    await session.flush()
    pairing.kiosk_id = kiosk.id
    return kiosk


@dataclass(frozen=True)
class Claimed:
    token: str | None  # None: not approved yet
    kiosk: Kiosk | None = None


async def claim_pairing(session: AsyncSession, auth: AuthService, claim: str) -> Claimed:
    """The kiosk asks with its claim secret; once approved it gets its device token, once."""
    pairing = await session.scalar(select(Pairing).where(Pairing.claim_hash == token_digest(claim)))
    if pairing is None or pairing.claimed_at is not None:
        raise KioskError("unknown or already used pairing", 404)
    if pairing.kiosk_id is None:
        if _aware(pairing.expires_at) <= utcnow():
            raise KioskError("the pairing code expired before approval; start again", 410)
        return Claimed(None)
    kiosk = await session.get(Kiosk, pairing.kiosk_id)
    assert kiosk is not None
    token = await auth.issue_device_token(
        session, DeviceKind.KIOSK, f"{TOKEN_NAME_PREFIX}{kiosk.id}"
    )
    await session.flush()
    kiosk.token_id = await session.scalar(
        select(DeviceToken.id).where(DeviceToken.token_hash == token_digest(token))
    )
    pairing.claimed_at = utcnow()
    return Claimed(token, kiosk)


def kiosk_id_of_token_name(name: str) -> int | None:
    if not name.startswith(TOKEN_NAME_PREFIX):
        return None
    try:
        return int(name.removeprefix(TOKEN_NAME_PREFIX))
    except ValueError:
        return None


async def revoke_kiosk(session: AsyncSession, kiosk_id: int) -> Kiosk:
    kiosk = await get_kiosk(session, kiosk_id)
    await session.execute(
        update(DeviceToken)
        .where(DeviceToken.name == f"{TOKEN_NAME_PREFIX}{kiosk.id}")
        .values(revoked=True)
    )
    kiosk.token_id = None
    return kiosk


async def get_kiosk(session: AsyncSession, kiosk_id: int) -> Kiosk:
    kiosk = await session.get(Kiosk, kiosk_id)
    if kiosk is None:
        raise KioskError(f"no kiosk {kiosk_id}", 404)
    return kiosk


async def kiosk_by_name(session: AsyncSession, name: str) -> Kiosk:
    kiosk = await session.scalar(select(Kiosk).where(Kiosk.name == name))
    if kiosk is None:
        raise KioskError(f"no kiosk named {name!r}", 404)
    return kiosk


async def placement_of(session: AsyncSession, kiosk: Kiosk) -> Placement:
    group = await session.get(KioskGroup, kiosk.group_id) if kiosk.group_id else None
    if group is None:
        return Placement()
    return Placement(group.code, group.district, group.street)


@dataclass
class Heartbeat:
    app_version: str
    content_version: str
    uptime_seconds: int
    last_rendered_at: dt.datetime | None
    cache_state: Mapping[str, Any]
    screenshot: str = ""


def check_screenshot(data_url: str) -> tuple[str, bytes]:
    """The type and bytes of a heartbeat's screenshot, a ``data:`` URL of a small image.

    The bytes must be what the URL says (checked by their first bytes) and at most
    ``SCREENSHOT_MAX_BYTES``: the board shows it to staff, so nothing else is kept.
    """
    match = SCREENSHOT_URL.match(data_url)
    if match is None:
        raise KioskError(
            "a screenshot must be a data: URL of a base64 JPEG, PNG or WebP image",
            field="screenshot",
        )
    content_type, encoded = match.groups()
    if len(encoded) * 3 // 4 > SCREENSHOT_MAX_BYTES + 2:
        raise KioskError(
            f"a screenshot may be at most {SCREENSHOT_MAX_BYTES // 1024} KiB; this one is "
            f"{len(encoded) * 3 // 4 // 1024} KiB",
            413,
            "screenshot",
        )
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KioskError("the screenshot is not valid base64", field="screenshot") from None
    if len(raw) > SCREENSHOT_MAX_BYTES:
        raise KioskError(
            f"a screenshot may be at most {SCREENSHOT_MAX_BYTES // 1024} KiB", 413, "screenshot"
        )
    magic = {
        "image/jpeg": raw[:3] == b"\xff\xd8\xff",
        "image/png": raw[:8] == b"\x89PNG\r\n\x1a\n",
        "image/webp": raw[:4] == b"RIFF" and raw[8:12] == b"WEBP",
    }
    if not magic[content_type]:
        raise KioskError(f"the screenshot's content is not {content_type}", field="screenshot")
    return content_type, raw


def screenshot_of(kiosk: Kiosk) -> tuple[str, bytes] | None:
    """The last screenshot a kiosk sent, as (content type, bytes), or None."""
    if not kiosk.screenshot:
        return None
    try:
        return check_screenshot(kiosk.screenshot)
    except KioskError:
        return None


async def record_heartbeat(
    session: AsyncSession, kiosk: Kiosk, beat: Heartbeat, source: str
) -> None:
    now = utcnow()
    if beat.screenshot:
        check_screenshot(beat.screenshot)  # before anything changes
    kiosk.last_seen_at = now
    # A kiosk's clock may run ahead; never believe it rendered in the future.
    rendered = beat.last_rendered_at
    kiosk.last_rendered_at = min(rendered, now) if rendered is not None else None
    kiosk.app_version = beat.app_version[:40]
    kiosk.content_version = beat.content_version[:64]
    kiosk.uptime_seconds = max(0, beat.uptime_seconds)
    kiosk.cache_state = dict(beat.cache_state)
    if beat.screenshot:
        kiosk.screenshot = beat.screenshot
        kiosk.screenshot_at = now
    kiosk.source = source[:64]


@dataclass(frozen=True)
class FleetRow:
    kiosk: Kiosk
    group: str
    state: rules.FleetState


async def fleet(
    session: AsyncSession, heartbeat: dt.timedelta, stale_after: dt.timedelta
) -> list[FleetRow]:
    groups = {g.id: g.code for g in await list_groups(session)}
    now = utcnow()
    rows = []
    for kiosk in (await session.scalars(select(Kiosk).order_by(Kiosk.name))).all():
        state = rules.fleet_state(
            now,
            _aware(kiosk.last_seen_at) if kiosk.last_seen_at else None,
            _aware(kiosk.last_rendered_at) if kiosk.last_rendered_at else None,
            heartbeat,
            stale_after,
        )
        rows.append(FleetRow(kiosk, groups.get(kiosk.group_id or 0, ""), state))
    return rows


async def record_plays(
    session: AsyncSession, kiosk: Kiosk, day: dt.date, counts: Mapping[tuple[int, str], int]
) -> None:
    for (item_id, action), count in counts.items():
        if action not in ("shown", "opened") or count <= 0:
            continue
        row = await session.scalar(
            select(PlayRecord).where(
                PlayRecord.kiosk_id == kiosk.id,
                PlayRecord.day == day,
                PlayRecord.item_id == item_id,
                PlayRecord.action == action,
            )
        )
        if row is None:
            session.add(
                PlayRecord(
                    kiosk_id=kiosk.id,
                    day=day,
                    item_id=item_id,
                    action=action,
                    count=min(count, 100000),
                )
            )
        else:
            row.count += min(count, 100000)


async def plays(
    session: AsyncSession, day_from: dt.date, day_until: dt.date
) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(PlayRecord, Kiosk.name)
        .join(Kiosk, Kiosk.id == PlayRecord.kiosk_id)
        .where(PlayRecord.day >= day_from, PlayRecord.day <= day_until)
        .order_by(PlayRecord.day, Kiosk.name, PlayRecord.item_id, PlayRecord.action)
    )
    return [
        {
            "day": r.day.isoformat(),
            "kiosk": name,
            "item_id": r.item_id,
            "action": r.action,
            "count": r.count,
        }
        for r, name in rows
    ]


# ---------------------------------------------------------------- alerts


async def create_alert(
    session: AsyncSession,
    *,
    headline: str,
    text: str = "",
    severity: str = "Extreme",
    source: str = "manual",
    identifier: str | None = None,
    groups: Sequence[str] = (),
    districts: Sequence[str] = (),
    expires_at: dt.datetime | None = None,
    created_by: str = "",
) -> Alert:
    if not headline.strip():
        raise KioskError("an alert needs a headline", field="headline")
    if expires_at is not None and expires_at <= utcnow():
        raise KioskError("the alert would already have expired", field="expires")
    codes = set((await session.scalars(select(KioskGroup.code))).all())
    missing = [code for code in groups if code not in codes]
    if missing:
        raise KioskError(f"no kiosk groups {missing}", field="groups")
    alert = Alert(
        identifier=identifier or f"unicomm-kiosk-{uuid.uuid4()}",
        source=source,
        headline=headline.strip()[:500],
        text=text.strip(),
        severity=severity,
        target=_target_json(groups, districts, ()),
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(alert)
    await session.flush()
    return alert


async def record_cap_alert(
    session: AsyncSession,
    identifier: str,
    headline: str,
    text: str,
    severity: str,
    area: str = "",
) -> tuple[Alert, bool]:
    """Store an alert from sms/ once: every node hears the bus event and tries.

    The CAP area is matched to the kiosk groups' districts; no area, or an area that
    names no kiosk district, reaches every kiosk (see :func:`rules.districts_of_area`).
    Returns the alert and whether this call created it.
    """
    existing = await session.scalar(select(Alert).where(Alert.identifier == identifier))
    if existing is not None:
        return existing, False
    known = set((await session.scalars(select(KioskGroup.district))).all())
    districts = rules.districts_of_area(area, known)
    try:
        async with session.begin_nested():
            alert = await create_alert(
                session,
                headline=headline,
                text=text,
                severity=severity,
                source="cap",
                identifier=identifier,
                districts=sorted(districts),
                created_by="sms",
            )
    except IntegrityError:
        found = await session.scalar(select(Alert).where(Alert.identifier == identifier))
        assert found is not None
        return found, False
    return alert, True


async def cancel_alert(session: AsyncSession, alert_id: int) -> Alert:
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise KioskError(f"no alert {alert_id}", 404)
    if alert.cancelled_at is None:
        alert.cancelled_at = utcnow()
    return alert


async def list_alerts(session: AsyncSession, limit: int = 50) -> Sequence[Alert]:
    return (await session.scalars(select(Alert).order_by(Alert.id.desc()).limit(limit))).all()


def alert_spec(alert: Alert) -> rules.AlertSpec:
    return rules.AlertSpec(
        id=alert.id,
        headline=alert.headline,
        text=alert.text,
        severity=alert.severity,
        target=target_of(alert.target),
        starts=_aware(alert.created_at),
        expires=_aware(alert.expires_at) if alert.expires_at else None,
        cancelled=alert.cancelled_at is not None,
    )


# ---------------------------------------------------------------- the feed


def item_content(item: ContentItem, media: Mapping[int, KioskMedia]) -> dict[str, Any]:
    """What the kiosk renders of an item: text as text (the app never parses HTML)."""
    content: dict[str, Any] = {
        "title": {"zh": item.title_zh, "en": item.title_en or item.title_zh},
        "body": {"zh": item.body_zh, "en": item.body_en or item.body_zh},
    }
    details = item.details
    if item.kind == ContentKind.GUIDE:
        content["steps"] = details.get("steps", [])
        content["documents"] = details.get("documents", [])
    elif item.kind in (ContentKind.IMAGE, ContentKind.VIDEO):
        found = media.get(int(details.get("media_id", 0)))
        if found is not None:
            content["media"] = {
                "url": f"/kiosk/media/{found.file_name}",
                "type": found.content_type,
                "size": found.size,
            }
    elif item.kind == ContentKind.NEWS:
        # A stable path (the feed's ETag must not change with each signature); it
        # redirects to a fresh signed VOD URL when played.
        content["stream"] = f"/kiosk/news/{details.get('vod_key', '')}"
    elif item.kind == ContentKind.PORTAL:
        content["portal"] = {
            "url": details.get("portal_url", ""),
            "title": details.get("portal_title", ""),
            "text": details.get("portal_text", ""),
            "fetched_at": details.get("portal_fetched_at"),
        }
    return content


async def build_feed(
    session: AsyncSession,
    place: Placement,
    now: dt.datetime,
    zone: ZoneInfo,
) -> rules.Feed:
    items = (await session.scalars(select(ContentItem))).all()
    media = {m.id: m for m in (await session.scalars(select(KioskMedia))).all()}
    specs = [
        rules.ItemSpec(
            item.id,
            ContentKind(item.kind),
            item.category,
            Window(
                _aware(item.valid_from) if item.valid_from else None,
                _aware(item.valid_until) if item.valid_until else None,
            ),
            item_content(item, media),
        )
        for item in items
    ]
    playlists = [
        rules.PlaylistSpec(
            p.id,
            p.name,
            tuple(p.item_ids),
            tuple(rules.ScheduleRule.from_json(r) for r in p.rules),
            target_of(p.target),
            p.priority,
        )
        for p in (await session.scalars(select(Playlist))).all()
    ]
    alerts = (
        await session.scalars(
            select(Alert).where(
                Alert.cancelled_at.is_(None),
                (Alert.expires_at.is_(None)) | (Alert.expires_at > now),
            )
        )
    ).all()
    return rules.build_feed(place, specs, playlists, [alert_spec(a) for a in alerts], now, zone)


async def counts(session: AsyncSession) -> dict[str, int]:
    return {
        "items": await session.scalar(select(func.count(ContentItem.id))) or 0,
        "playlists": await session.scalar(select(func.count(Playlist.id))) or 0,
        "kiosks": await session.scalar(select(func.count(Kiosk.id))) or 0,
    }


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
