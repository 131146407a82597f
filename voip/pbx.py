"""The PBX features beside the SIP core: media workers and the exchange's router.

Created in ``voip.setup(app)`` next to :class:`voip.server.VoipServer` and started
after it (its cleanup context is registered later), it starts the media worker
pool, trusts the workers' address and hands the call core its router.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from core.context import AppContext

from .did import DidTable
from .features.service import PbxFeatures
from .media_engine import MediaPool
from .media_engine.apps import echo_test, milliwatt, prepare_prompts
from .plan_store import PlanStore
from .router import ExchangeRouter
from .rtp_relay import RtpRelay
from .server import VoipServer
from .trunk import CarrierTrunk, InboundRouter, TrunkTransactions

log = structlog.get_logger("voip.pbx")


class Pbx:
    def __init__(self, ctx: AppContext, server: VoipServer) -> None:
        self.ctx = ctx
        self.server = server
        self.pool: MediaPool | None = None
        self.router: ExchangeRouter | None = None
        self.trunk: CarrierTrunk | None = None
        self.relay: RtpRelay | None = None
        self.plan = PlanStore(ctx.db)
        self.features = PbxFeatures(ctx, server)
        # The trunk's inbound numbers: kept (and editable) with or without a trunk.
        self.dids = DidTable(ctx.db)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings = self.ctx.settings
        b2bua = self.server.b2bua
        if b2bua is None:
            return  # SIP is down (the server logged why): nothing to route
        if settings.voip_media_workers > 0:
            prompts = prepare_prompts(settings.path("media", "prompts"))
            self.server.protection.trust(f"{settings.voip_media_host}/32")
            self.pool = MediaPool(
                size=settings.voip_media_workers,
                host=settings.voip_media_host,
                sip_port=settings.voip_media_sip_port,
                rtp_port=settings.voip_media_rtp_port,
                log_dir=settings.path("media", "workers"),
                apps={
                    "echo": echo_test,
                    "milliwatt": milliwatt(prompts),
                    **self.features.media_apps(),
                },
                on_lost=b2bua.hang_up,
            )
            await self.pool.start()
        try:
            await self.plan.reload()
        except Exception:
            log.exception("pbx.plan_unavailable")  # the built-in default plan applies
        self._tasks.append(self.ctx.spawn("voip.dialplan", self.plan.run))
        self.trunk = self._trunk()
        if self.trunk is not None:
            self._tasks.append(self.ctx.spawn("voip.trunk", self.trunk.run))
        self.router = ExchangeRouter(
            self.plan,
            self.server.accounts,
            self.server.location,
            instance=self.server.instance,
            pool=self.pool,
            trunk=self.trunk,
        )
        # Extensions' settings, voicemail and ring groups come before the dial plan's router.
        b2bua.router = await self.features.start(self.router, b2bua)
        try:
            await self.dids.reload()
        except Exception:
            log.exception("pbx.dids_unavailable")  # the next reload retries
        self._tasks.append(self.ctx.spawn("voip.dids", self.dids.run))
        if self.trunk is not None:
            # The carrier's calls: known by its address, routed by the DID table.
            await self.trunk.resolve()
            self.server.authenticator.trusted_peers.append(self.trunk.caller_of)
            b2bua.router = InboundRouter(
                b2bua.router,
                self.trunk,
                self.dids,
                self.server.accounts,
                self.server.location,
                instance=self.server.instance,
                groups=self.features.groups.get,
                menus=self.features.ivr.get,
            )

    async def stop(self) -> None:
        if self.server.b2bua is not None:
            self.server.b2bua.router = None
        if (
            self.trunk is not None
            and self.trunk.caller_of in self.server.authenticator.trusted_peers
        ):
            self.server.authenticator.trusted_peers.remove(self.trunk.caller_of)
        await self.features.stop(self.server.b2bua)
        if self.trunk is not None:
            await self.trunk.unregister()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pool is not None:
            await self.pool.stop()
        if self.relay is not None:
            self.relay.close_all()

    def _trunk(self) -> CarrierTrunk | None:
        settings = self.ctx.settings
        endpoint = self.server.endpoint
        if not settings.voip_trunk_host or endpoint is None or endpoint.tu is None:
            return None
        public_host = settings.voip_trunk_public_host or self.server.advertised_host
        self.relay = RtpRelay(
            inside_host=self.server.advertised_host,
            outside_host=public_host,
            registry=self.ctx.metrics,
        )
        transactions = TrunkTransactions(endpoint.tu)
        endpoint.tu = transactions
        with contextlib.suppress(ValueError):
            # The carrier is a trunk: never rate-limited or banned (it carries many calls).
            self.server.protection.trust(f"{ipaddress.ip_address(settings.voip_trunk_host)}/32")
        return CarrierTrunk(
            endpoint,
            transactions,
            self.relay,
            host=settings.voip_trunk_host,
            port=settings.voip_trunk_port,
            domain=settings.voip_trunk_domain,
            username=settings.voip_trunk_username,
            password=settings.voip_trunk_password,
            register=settings.voip_trunk_register,
            expires=settings.voip_trunk_expires,
            public_host=public_host,
            default_caller_id=settings.voip_trunk_username,
        )

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()
