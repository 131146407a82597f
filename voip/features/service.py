"""The PBX features assembled: made by :class:`voip.pbx.Pbx`, one per node.

It owns the feature stores (call settings, ring groups, IVR menus), voicemail with its prompts
and message-waiting NOTIFYs, the media applications the workers run for them, and
the router that wraps the dial plan's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from core.context import AppContext
from voip.sip.dialog_info import EVENT as DIALOG_EVENT
from voip.sip.message import Request
from voip.sip.transaction import ServerTransaction

from ..b2bua import B2bua, Call
from ..media_engine import MediaApp, MediaSession
from ..router import ExchangeRouter
from ..rtp_relay import RtpRelay
from ..server import VoipServer
from ..transport.base import Flow
from .activity import Activity
from .blf import BusyLamps
from .hold import MOH_APP, MusicOnHold, prepare_music
from .ivr import IvrMenus
from .mwi import MwiNotifier, MwiSubscriptions
from .pickup import CallPickup
from .prompts import Prompts
from .recording import CallRecordings
from .ringgroups import RingGroups
from .router import ANNOUNCE_APP, IVR_APP, MAILBOX_APP, VOICEMAIL_APP, FeatureRouter
from .settings import FeatureStore
from .voicemail import VoicemailService

log = structlog.get_logger("voip.features")


class PbxFeatures:
    def __init__(self, ctx: AppContext, server: VoipServer) -> None:
        self.ctx = ctx
        self.server = server
        settings = ctx.settings
        self.store = FeatureStore(ctx.db)
        self.activity = Activity()
        self.groups = RingGroups(
            ctx.db, server.accounts, server.location, self.activity, instance=server.instance
        )
        self.prompts = Prompts(settings.path("media", "prompts"))
        self.ivr = IvrMenus(ctx.db, self.prompts)
        self.voicemail = VoicemailService(
            ctx.db, settings.path("voicemail"), self.prompts, self.store, None
        )
        self.pickup = CallPickup(self.store)
        self.hold = MusicOnHold()
        self.recordings = CallRecordings(
            ctx.db,
            self.store,
            server.accounts,
            settings.path("recordings"),
            retention_days=settings.voip_recording_days,
            media_host=settings.voip_media_host,
        )
        self._own_relay: RtpRelay | None = None
        self.router: FeatureRouter | None = None
        self.lamps: BusyLamps | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    def media_apps(self) -> dict[str, MediaApp]:
        return {
            VOICEMAIL_APP.app: self.voicemail.record_message,
            MAILBOX_APP.app: self.voicemail.mailbox_menu,
            ANNOUNCE_APP.app: self.announce,
            IVR_APP.app: self.ivr.run,
            MOH_APP: self.hold.play,
        }

    async def start(self, inner: ExchangeRouter, b2bua: B2bua) -> FeatureRouter:
        if self.server.endpoint is not None:  # made by the SIP server's start, before ours
            self.voicemail.mwi = MwiNotifier(
                self.server.endpoint,
                self.server.location,
                realm=self.ctx.settings.sip_realm,
                instance=self.server.instance,
            )
            # Phones that SUBSCRIBE to message-summary hear their mailbox's state at once.
            mwi = MwiSubscriptions(
                self.server.endpoint,
                self.server.authenticator,
                self.voicemail.counts,
                realm=self.ctx.settings.sip_realm,
            )
            self.lamps = BusyLamps(
                self.server.endpoint,
                self.server.authenticator,
                self.server.accounts,
                realm=self.ctx.settings.sip_realm,
            )
            lamps = self.lamps

            async def subscribe(
                request: Request, transaction: ServerTransaction, flow: Flow
            ) -> None:
                # By event package: busy lamps (RFC 4235) or message-waiting (RFC 3842).
                event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
                handler = lamps.handle if event == DIALOG_EVENT else mwi.handle
                await handler(request, transaction, flow)

            self.server.subscriptions = subscribe
        for loader in (self.store.reload, self.groups.reload, self.ivr.reload):
            try:
                await loader()
            except Exception:
                log.exception("features.unavailable")  # defaults apply until the next reload
        self._tasks.append(self.ctx.spawn("voip.features", self.store.run))
        self._tasks.append(self.ctx.spawn("voip.ringgroups", self.groups.run))
        self._tasks.append(self.ctx.spawn("voip.ivr", self.ivr.run_reloads))
        self._tasks.append(self.ctx.spawn("voip.prompts", self.prompts.prepare))
        if inner.pool is not None:
            settings = self.ctx.settings
            try:
                self.hold.music = await prepare_music(
                    settings.path("media", "prompts"), settings.voip_moh_file
                )
            except Exception:
                log.exception("moh.unavailable")  # hold is relayed without music
        self.hold.bind(b2bua, inner.pool)
        # Recorded calls go through an RTP relay: the trunk's when there is one.
        trunk_relay = getattr(inner.trunk, "relay", None)
        if isinstance(trunk_relay, RtpRelay):
            self.recordings.relay = trunk_relay
        else:
            host = self.server.advertised_host
            self._own_relay = RtpRelay(
                inside_host=host, outside_host=host, registry=self.ctx.metrics
            )
            self.recordings.relay = self._own_relay
        self._tasks.append(self.ctx.spawn("voip.recordings", self.recordings.run_sweeps))
        self.router = FeatureRouter(
            inner,
            inner.store,
            self.server.accounts,
            self.server.location,
            self.store,
            self.voicemail,
            self.groups,
            instance=self.server.instance,
            ivr=self.ivr,
            pickup=self.pickup,
            recordings=self.recordings,
        )
        b2bua.watchers.append(self.watch)
        return self.router

    async def stop(self, b2bua: B2bua | None) -> None:
        self.server.subscriptions = None
        if b2bua is not None and self.watch in b2bua.watchers:
            b2bua.watchers.remove(self.watch)
        self.hold.unbind()
        self.recordings.stop()
        await self.recordings.drain()
        if self._own_relay is not None:
            self._own_relay.close_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def watch(self, call: Call) -> None:
        self.activity.changed(call.id, call.state, (call.caller.number, call.callee.number))
        if self.lamps is not None:
            self.lamps.watch(call)
        self.pickup.watch(call)
        self.hold.watch(call)
        self.recordings.watch(call)

    async def announce(self, session: MediaSession) -> None:
        """A feature code's spoken confirmation, then goodbye."""
        router = self.router
        announcement = router.announcements.get(session.call_id) if router else None
        if announcement is None:
            await session.hangup(404)
            return
        prompt, caller = announcement
        language = self.store.get(caller).language  # in the caller's own language
        await session.answer()
        await asyncio.sleep(0.3)  # the phone's media is up before the first word
        await session.play_to_end(await self.prompts.get(prompt, language), longest=10)
        await session.hangup()
