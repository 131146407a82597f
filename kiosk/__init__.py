"""Kiosks: content and devices of the street information kiosks.

Narrow interface for other services: publish an alert by calling the JSON API
(``POST /api/kiosk/alerts``) or by publishing sms's ``AlertPublished`` on the bus,
which every node turns into a takeover of every kiosk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from aiohttp import web

from core.context import AppContext
from core.web import CONSOLE, CTX, I18N, errors_middleware
from kiosk import api, service
from kiosk.cli import add_cli
from kiosk.feeds import FeedCache, FeedChanged
from kiosk.live import KioskPush, LiveHub
from kiosk.messages import MESSAGES

log = structlog.get_logger("kiosk")

# Also the order of the console's navigation.
SETUP_ORDER = 60
PORTAL_REFRESH_SECONDS = 3600
FEEDS = web.AppKey("kiosk_feeds", FeedCache)


# News clips are served on the kiosks' own routes: kiosks on the public network reach
# only /kiosk/..., so vod's signed links are mounted here too (through vod's interface).
NEWS_PREFIX = "/kiosk/vod/s"


def _news_url(app: web.Application) -> Callable[[str], str | None]:
    """A fresh signed VOD URL for a news clip, through what vod/ exports (None without vod)."""

    def url(key: str) -> str | None:
        try:
            from vod import signed_media_path
        except ImportError:
            return None
        return signed_media_path(app, key, prefix=NEWS_PREFIX)

    return url


def _mount_news_media(app: web.Application, router: web.UrlDispatcher) -> None:
    """vod's signed media on a kiosk router (the player script is mounted with the app)."""
    try:
        from vod import add_signed_media_routes
    except ImportError:
        log.warning("kiosk.no_vod")
        return
    add_signed_media_routes(app, router, NEWS_PREFIX)


def setup(app: web.Application) -> None:
    ctx = app[CTX]
    app[I18N].add(MESSAGES)
    app[CONSOLE].add_templates("kiosk", Path(__file__).parent / "templates")
    hub = LiveHub(ctx.bus)
    app[api.HUB] = hub
    feeds = FeedCache(ctx, ctx.settings.zone)
    app[FEEDS] = feeds
    news = _news_url(app)
    api.mount(app, hub, feeds)
    api.mount_kiosk_routes(app.router, ctx, hub, feeds, news)
    _mount_news_media(app, app.router)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        await feeds.start()
        await _subscribe_to_sms_alerts(ctx, hub, feeds)
        ctx.spawn("kiosk.portal", lambda: _refresh_portal_pages(ctx, feeds))
        listener = await _start_kiosk_listener(app, hub, feeds, news)
        yield
        if listener is not None:
            await listener.cleanup()

    app.cleanup_ctx.append(lifecycle)


async def _start_kiosk_listener(
    app: web.Application, hub: LiveHub, feeds: FeedCache, news: Callable[[str], str | None]
) -> web.AppRunner | None:
    """The public network's listener: the kiosk's own routes and nothing else."""
    ctx = app[CTX]
    if not ctx.settings.kiosk_http_port:
        return None
    kiosk_app = web.Application(middlewares=[errors_middleware], client_max_size=512 * 1024)
    api.mount_kiosk_routes(kiosk_app.router, ctx, hub, feeds, news)
    _mount_news_media(app, kiosk_app.router)
    runner = web.AppRunner(kiosk_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, ctx.settings.kiosk_http_host, ctx.settings.kiosk_http_port)
    await site.start()
    log.info(
        "kiosk.listener",
        http=f"http://{ctx.settings.kiosk_http_host}:{ctx.settings.kiosk_http_port}/kiosk/",
    )
    return runner


async def _subscribe_to_sms_alerts(ctx: AppContext, hub: LiveHub, feeds: FeedCache) -> None:
    try:
        # sms/events.py is sms's published event module ("kiosks ... subscribe").
        from sms import AlertPublished
    except ImportError:
        log.warning("kiosk.no_sms_alerts")
        return

    async def on_alert(event: AlertPublished) -> None:
        text = "\n".join(part for part in (event.description, event.instruction) if part)
        async with ctx.db.session() as session:
            alert, _ = await service.record_cap_alert(
                session, event.identifier, event.headline, text, event.severity, event.area
            )
        if event.area and not alert.target.get("districts"):
            # Named no kiosk district: it went to every kiosk; say so for the operators.
            log.warning("kiosk.cap_area_everywhere", area=event.area, identifier=event.identifier)
        # Every node hears the sms event, so each clears its own feeds and pushes to its
        # own kiosks directly.
        feeds.invalidate()
        await hub.deliver(api.alert_push(alert))

    await ctx.bus.subscribe(AlertPublished, on_alert)


async def _refresh_portal_pages(ctx: AppContext, feeds: FeedCache) -> None:
    while True:
        async with ctx.db.session() as session:
            ids = [i.id for i in await service.list_items(session) if i.kind == "portal"]
        for item_id in ids:
            await api.refresh_portal(ctx, feeds, item_id)
        await asyncio.sleep(PORTAL_REFRESH_SECONDS)


__all__ = ["FEEDS", "SETUP_ORDER", "FeedChanged", "KioskPush", "add_cli", "setup"]
