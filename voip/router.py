"""The exchange's router: what a dialled number means before extension routing.

It is the :class:`voip.routing.CallRouter` the call core consults. It asks the dial
plan (:mod:`voip.dialplan`) with the caller's effective class of service and turns
the decision into a fork (a media worker for a feature, the carrier trunk for an
outside number, a department's main extension for a short code) or a refusal (403
when the class of service does not reach, busy when the media pool is full).
Numbers the plan does not know are left to the directory (``None``), so an
extension outside the configured ranges still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog

from voip.models import Disposition
from voip.sip.message import Request

from .accounts import Account, Accounts
from .dialplan import FeatureAction, Refused, ToExtension, ToFeature, ToPstn, effective_cos
from .location import Location
from .media_engine import MediaPool
from .plan_store import PlanStore, Policy
from .routing import Forward, Refusal, Route, pseudo_account
from .transport.base import Flow

log = structlog.get_logger("voip.router")


@dataclass(frozen=True)
class MediaFeature:
    app: str  # the media application (see voip.media_engine.apps)
    name: str  # what the CDR and the live-calls list show as the callee


# Feature codes answered by a media worker, by action.
MEDIA_FEATURES = {
    FeatureAction.ECHO: MediaFeature("echo", "Echo test"),
    FeatureAction.TEST_TONE: MediaFeature("milliwatt", "Test tone"),
}


class Trunk(Protocol):
    async def forward(
        self, caller: Account, pstn: ToPstn, request: Request, policy: Policy | None
    ) -> Route: ...


class ExchangeRouter:
    def __init__(
        self,
        store: PlanStore,
        accounts: Accounts,
        location: Location,
        *,
        instance: str,
        pool: MediaPool | None,
        trunk: Trunk | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.location = location
        self.instance = instance
        self.pool = pool
        self.trunk = trunk

    async def route(self, caller: Account, number: str, request: Request) -> Route:
        policy = self.store.policy(caller.department_id)
        cos = effective_cos(caller.class_of_service, policy.class_of_service if policy else None)
        decision = self.store.plan.decide(number, cos)
        if isinstance(decision, Refused):
            if decision.status == 404:
                return None  # unknown to the plan: the directory may still know it
            log.info(
                "sip.dialplan_refused",
                caller=caller.number,
                number=number,
                status=decision.status,
                reason=decision.reason,
            )
            disposition = Disposition.REJECTED if decision.status == 403 else Disposition.FAILED
            # An outside number the class of service does not reach is still an outbound
            # call attempt (costs nothing, counted as placed by the department).
            direction = "outbound" if decision.outbound else "internal"
            return Refusal(decision.status, disposition, _reason(decision), direction)
        if isinstance(decision, ToExtension):
            if decision.via_short_code is None:
                return None  # the call core's own business
            return await self._to_extension(decision.number)
        if isinstance(decision, ToFeature):
            feature = MEDIA_FEATURES.get(decision.action)
            if feature is None:
                return Refusal(501, Disposition.FAILED, "Not Implemented (feature)")
            return self.to_media(number, feature, request.call_id)
        if self.trunk is None:
            return Refusal(503, Disposition.FAILED, "Service Unavailable (no trunk)")
        return await self.trunk.forward(caller, decision, request, policy)

    async def _to_extension(self, number: str) -> Route:
        callee = await self.accounts.get(number)
        if callee is None or not callee.enabled:
            return Refusal(404, Disposition.NOT_FOUND)
        contacts = await self.location.lookup(callee.number)
        targets = [(c.uri, flow) for c in contacts if (flow := c.flow(self.instance))]
        if not targets:
            return Refusal(480, Disposition.UNAVAILABLE)
        return Forward(callee=callee, targets=targets)

    def to_media(self, number: str, feature: MediaFeature, call_id: str) -> Route:
        pool = self.pool
        if pool is None or not pool.workers:
            return Refusal(503, Disposition.FAILED, "Service Unavailable (no media workers)")
        session = pool.reserve(feature.app, call_id)
        if session is None:
            # Every slot of every worker is taken: busy at once, never a call left hanging.
            log.info("media.pool_full", number=number, capacity=pool.capacity)
            return Refusal(486, Disposition.BUSY, "Busy Here (media workers full)")
        worker = session.worker
        flow = Flow("UDP", worker.host, worker.sip_port)
        return Forward(
            callee=pseudo_account(number, feature.name),
            targets=[(session.target, flow)],
            on_end=[lambda: pool.exchange_ended(session)],
        )


def _reason(refused: Refused) -> str:
    base = {403: "Forbidden", 484: "Address Incomplete"}.get(refused.status, "Refused")
    return f"{base} ({refused.reason})"
