"""The kiosk service layer on SQLite and on a real PostgreSQL (``database_url``).

Everything an operator or a kiosk does, through ``kiosk.service`` with the caller's
session, as the API and the CLI use it: groups, items, playlists, pairing, heartbeat
and fleet, proof of play, alerts (CAP recorded once, its area matched to districts).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import migrations
from core.config import load_settings
from core.context import AppContext
from core.db import utcnow
from kiosk import service
from kiosk.models import Alert, Playlist
from kiosk.rules import ContentKind, FleetState, Placement

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def ctx(tmp_path: Path, database_url: str) -> AsyncIterator[AppContext]:
    os.environ.pop("UNICOMM_CONFIG", None)
    settings = load_settings(None, data_dir=str(tmp_path / "var"), database_url=database_url)
    await migrations.upgrade_async(settings.database_url)
    context = AppContext.create(settings)
    yield context
    await context.close()


async def _groups(ctx: AppContext) -> None:
    async with ctx.db.session() as session:
        await service.add_group(session, "G1", "长安街", district="东城", street="长安街")
        await service.add_group(session, "G2", "西单", district="西城")
        await service.add_group(session, "G3", "未分区")


async def test_content_playlists_and_feed(ctx: AppContext) -> None:
    await _groups(ctx)
    async with ctx.db.session() as session:
        with pytest.raises(service.KioskError) as duplicate:
            await service.add_group(session, "G1", "again")
        assert duplicate.value.status == 409
    async with ctx.db.session() as session:
        notice = await service.create_item(
            session,
            service.ItemInput(ContentKind.NOTICE, "notices", "停水通知", "Water cut", "明天停水"),
        )
        guide = await service.create_item(
            session,
            service.ItemInput(
                ContentKind.GUIDE, "guides", "居住证", steps=[{"zh": "预约", "en": "Book"}]
            ),
        )
        news = await service.create_item(
            session,
            service.ItemInput(ContentKind.NEWS, "news", "新闻联播", vod_key="a" * 32),
        )
        playlist = await service.create_playlist(
            session,
            service.PlaylistInput("东城", [notice.id, guide.id, news.id], districts=["东城"]),
        )
        ids = notice.id, guide.id, news.id, playlist.id
    notice_id, guide_id, news_id, playlist_id = ids

    # A refused change leaves nothing half-written.
    with pytest.raises(service.KioskError) as unknown:
        async with ctx.db.session() as session:
            await service.update_playlist(
                session, playlist_id, service.PlaylistInput("东城", [notice_id, 9999])
            )
    assert unknown.value.field == "item_ids"
    async with ctx.db.session() as session:
        assert await service.is_news_on_kiosks(session, "a" * 32)
        assert not await service.is_news_on_kiosks(session, "b" * 32)
        east = await service.build_feed(session, Placement("G1", "东城"), utcnow(), ZONE)
        west = await service.build_feed(session, Placement("G2", "西城"), utcnow(), ZONE)
    assert [i["id"] for i in east.body["items"]] == [notice_id, guide_id, news_id]
    assert east.body["items"][2]["stream"] == f"/kiosk/news/{'a' * 32}"
    assert west.body["items"] == []

    # Edit, then delete: the item leaves the playlist with it; the ETag follows.
    async with ctx.db.session() as session:
        await service.update_item(
            session,
            notice_id,
            service.ItemInput(ContentKind.NOTICE, "notices", "停水通知（改）", "Water cut"),
        )
        await service.delete_item(session, guide_id)
    async with ctx.db.session() as session:
        again = await service.build_feed(session, Placement("G1", "东城"), utcnow(), ZONE)
        stored = await session.get(Playlist, playlist_id)
        assert stored is not None and stored.item_ids == [notice_id, news_id]
    assert again.etag != east.etag
    assert again.body["items"][0]["title"]["zh"] == "停水通知（改）"
    async with ctx.db.session() as session:
        await service.delete_playlist(session, playlist_id)
    async with ctx.db.session() as session:
        assert await service.list_playlists(session) == []
        with pytest.raises(service.KioskError) as gone:
            await service.delete_playlist(session, playlist_id)
        assert gone.value.status == 404


async def test_pairing_heartbeat_fleet_and_plays(ctx: AppContext) -> None:
    await _groups(ctx)
    async with ctx.db.session() as session:
        started = await service.start_pairing(session, dt.timedelta(minutes=15), "10.0.0.9")
    async with ctx.db.session() as session:
        waiting = await service.claim_pairing(session, ctx.auth, started.claim)
        assert waiting.token is None
        kiosk = await service.approve_pairing(
            session, started.code.lower(), "东城-1", "G1"
        )  # codes are read aloud: case does not matter
        kiosk_id = kiosk.id
    async with ctx.db.session() as session:
        claimed = await service.claim_pairing(session, ctx.auth, started.claim)
    assert claimed.token is not None and claimed.token.startswith("ud_")
    identity = await ctx.auth.identify_token(claimed.token)
    assert identity is not None and service.kiosk_id_of_token_name(identity.subject) == kiosk_id
    async with ctx.db.session() as session:
        with pytest.raises(service.KioskError):
            await service.claim_pairing(session, ctx.auth, started.claim)  # once only

    now = utcnow()
    async with ctx.db.session() as session:
        kiosk = await service.get_kiosk(session, kiosk_id)
        await service.record_heartbeat(
            session,
            kiosk,
            service.Heartbeat("1", "v9", 60, now + dt.timedelta(hours=1), {"media_cached": 2}),
            "10.0.0.9",
        )
        day = dt.date(2026, 11, 21)
        await service.record_plays(session, kiosk, day, {(1, "shown"): 3, (1, "bogus"): 5})
        await service.record_plays(session, kiosk, day, {(1, "shown"): 2, (1, "opened"): 1})
    async with ctx.db.session() as session:
        rows = await service.fleet(session, dt.timedelta(seconds=30), dt.timedelta(seconds=120))
        report = await service.plays(session, day, day)
        place = await service.placement_of(session, await service.get_kiosk(session, kiosk_id))
    assert [(r.kiosk.name, r.group, r.state) for r in rows] == [("东城-1", "G1", FleetState.ONLINE)]
    rendered = rows[0].kiosk.last_rendered_at
    assert rendered is not None and rendered.replace(tzinfo=dt.UTC) <= utcnow()  # never future
    assert [(r["action"], r["count"]) for r in report] == [("opened", 1), ("shown", 5)]
    assert place == Placement("G1", "东城", "长安街")

    async with ctx.db.session() as session:
        await service.revoke_kiosk(session, kiosk_id)
    assert await ctx.auth.identify_token(claimed.token) is None


async def test_alerts_and_cap_area(ctx: AppContext) -> None:
    await _groups(ctx)
    async with ctx.db.session() as session:
        manual = await service.create_alert(session, headline="全市演练", groups=["G3"])
        first, created = await service.record_cap_alert(
            session, "cap-1", "暴雨红色预警", "请勿外出", "Extreme", "北京市东城区、西城区"
        )
        assert created
    async with ctx.db.session() as session:
        # Every node hears the same CAP event: it is recorded once.
        again, created = await service.record_cap_alert(session, "cap-1", "暴雨", "", "Extreme")
        assert not created and again.id == first.id
        everywhere, _ = await service.record_cap_alert(session, "cap-2", "地震", "", "Severe")
        elsewhere, _ = await service.record_cap_alert(
            session, "cap-3", "大风", "", "Moderate", "海淀区"
        )
        assert (await session.scalars(select(Alert.identifier).order_by(Alert.id))).all() == [
            manual.identifier,
            "cap-1",
            "cap-2",
            "cap-3",
        ]
    assert first.target["districts"] == ["东城", "西城"]
    assert everywhere.target == {"groups": [], "districts": [], "streets": []}
    # 海淀 has no kiosk: an area naming no kiosk district goes to every kiosk.
    assert elsewhere.target == {"groups": [], "districts": [], "streets": []}

    async def headlines(place: Placement) -> list[str]:
        async with ctx.db.session() as session:
            feed = await service.build_feed(session, place, utcnow(), ZONE)
        return sorted(a["headline"] for a in feed.body["alerts"])

    assert await headlines(Placement("G1", "东城")) == ["地震", "大风", "暴雨红色预警"]
    assert await headlines(Placement("G2", "西城")) == ["地震", "大风", "暴雨红色预警"]
    assert await headlines(Placement("G3", "")) == ["全市演练", "地震", "大风"]

    async with ctx.db.session() as session:
        await service.cancel_alert(session, first.id)
    assert await headlines(Placement("G1", "东城")) == ["地震", "大风"]
