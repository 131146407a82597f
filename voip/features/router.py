"""The feature router: extensions' settings and ring groups before the dial plan's router.

It is the :class:`voip.routing.CallRouter` the call core consults, wrapping the
dial-plan router (:class:`voip.router.ExchangeRouter`): feature codes it serves
(forwarding, DND, the voicemail box) and ring groups are answered here; a call for
an extension becomes a fork with a next step (:mod:`.forwarding`) for busy or no
answer; everything else (outside numbers, short codes, echo and tone) goes on to
the wrapped router unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from voip.models import Disposition
from voip.sip.message import Request

from ..accounts import Account, Accounts
from ..dialplan import FeatureAction, ToFeature, effective_cos
from ..location import Location
from ..plan_store import PlanStore
from ..router import ExchangeRouter, MediaFeature
from ..routing import Forward, Refusal, Route
from ..transport.base import Flow
from .forwarding import (
    MAX_FORWARDS,
    Busy,
    ForwardTo,
    Step,
    ToVoicemail,
    after_failure,
    first_step,
)
from .ivr import IvrMenu, IvrMenus
from .pickup import CallPickup
from .recording import CallRecordings
from .ringgroups import RingGroups
from .settings import CallFeatures, FeatureStore
from .voicemail import VoicemailService

log = structlog.get_logger("voip.features")

# Media applications of the workers for these features (see Pbx: the pool's apps).
VOICEMAIL_APP = MediaFeature("voicemail", "Voicemail")
MAILBOX_APP = MediaFeature("mailbox", "Voicemail box")
ANNOUNCE_APP = MediaFeature("announce", "Feature code")
IVR_APP = MediaFeature("ivr", "Auto attendant")

SETTING_CODES: dict[FeatureAction, tuple[dict[str, object], str]] = {
    FeatureAction.DND_ON: ({"dnd": True}, "dnd_on"),
    FeatureAction.DND_OFF: ({"dnd": False}, "dnd_off"),
    FeatureAction.FORWARD_OFF: ({"forward_always": ""}, "forwarding_off"),
}


@dataclass
class _Chain:
    """One call's way through forwarding: where it has been, to stop loops."""

    caller: Account
    request: Request
    visited: set[str] = field(default_factory=set)


class FeatureRouter:
    def __init__(
        self,
        inner: ExchangeRouter,
        store: PlanStore,
        accounts: Accounts,
        location: Location,
        features: FeatureStore,
        voicemail: VoicemailService,
        groups: RingGroups,
        *,
        instance: str,
        ivr: IvrMenus | None = None,
        pickup: CallPickup | None = None,
        recordings: CallRecordings | None = None,
    ) -> None:
        self.inner = inner
        self.store = store
        self.accounts = accounts
        self.location = location
        self.features = features
        self.voicemail = voicemail
        self.groups = groups
        self.ivr = ivr
        self.pickup = pickup
        self.recordings = recordings
        self.instance = instance
        # What the "announce" application says (prompt, to whom), by the caller's Call-ID.
        self.announcements: dict[str, tuple[str, str]] = {}

    async def route(self, caller: Account, number: str, request: Request) -> Route:
        routed = await self._route(caller, number, request)
        if self.recordings is not None:
            # A recorded extension's call: its media through the relay, which records it.
            routed = await self.recordings.anchor_route(caller, routed, request.call_id)
        return routed

    async def _route(self, caller: Account, number: str, request: Request) -> Route:
        policy = self.store.policy(caller.department_id)
        cos = effective_cos(caller.class_of_service, policy.class_of_service if policy else None)
        decision = self.store.plan.decide(number, cos)
        if isinstance(decision, ToFeature):
            served = await self._feature_code(caller, decision, request)
            if served is not None:
                return served
        elif (group := self.groups.get(number)) is not None:
            return await self.groups.route(group, caller, request)
        elif self.ivr is not None and (menu := self.ivr.get(number)) is not None:
            return self._to_ivr(menu, request)
        routed = await self.inner.route(caller, number, request)
        if routed is not None:
            return routed
        callee = await self.accounts.get(number) if number else None
        if callee is None or not callee.enabled:
            return None  # the call core answers 404
        if not self._settings(callee.number).changes_routing:
            if self.recordings is not None and self.recordings.wants(caller, callee):
                targets = await self.targets(callee.number)
                return Forward(callee=callee, targets=targets) if targets else None
            return None  # rings like any extension: the call core's own way
        return await self.to_extension(callee, _Chain(caller, request, {callee.number}))

    def _settings(self, number: str) -> CallFeatures:
        """An extension's settings as they can apply: no mailbox without media workers."""
        features = self.features.get(number)
        pool = self.inner.pool
        if features.voicemail and (pool is None or not pool.workers):
            return dataclasses.replace(features, voicemail=False)
        return features

    # -- extensions ------------------------------------------------------------------------

    async def to_extension(self, callee: Account, chain: _Chain) -> Route:
        features = self._settings(callee.number)
        return await self._take(first_step(callee.number, features), callee, chain)

    async def _take(self, step: Step, callee: Account, chain: _Chain) -> Route:
        if isinstance(step, Busy):
            return Refusal(486, Disposition.BUSY, f"Busy Here ({step.reason})")
        if isinstance(step, ToVoicemail):
            return self._to_voicemail(step.mailbox, callee, chain)
        if isinstance(step, ForwardTo):
            return await self._forward(step, callee, chain)
        targets = await self.targets(step.number)
        if not targets:
            # No phone registered: what follows no answer follows now.
            return await self._after(callee, chain, 480) or Refusal(480, Disposition.UNAVAILABLE)
        return Forward(
            callee=callee,
            targets=targets,
            ring_seconds=step.ring_seconds,
            next_step=self._next(callee, chain),
        )

    def _next(self, callee: Account, chain: _Chain) -> Callable[[int], Awaitable[Route]]:
        async def next_step(status: int) -> Route:
            return await self._after(callee, chain, status)

        return next_step

    async def _after(self, callee: Account, chain: _Chain, status: int) -> Route:
        step = after_failure(callee.number, self._settings(callee.number), status)
        return None if step is None else await self._take(step, callee, chain)

    async def _forward(self, step: ForwardTo, forwarder: Account, chain: _Chain) -> Route:
        number = step.number
        if number in chain.visited or len(chain.visited) > MAX_FORWARDS:
            log.warning("features.forward_loop", number=number, chain=sorted(chain.visited))
            return Refusal(482, Disposition.FAILED, "Loop Detected (call forwarding)")
        chain.visited.add(number)
        log.info("features.forwarded", by=forwarder.number, to=number, reason=step.reason)
        target = await self.accounts.get(number)
        if target is not None and target.enabled:
            return await self.to_extension(target, chain)
        # Not an extension: the forwarder's own class of service decides (they pay).
        return await self.inner.route(forwarder, number, chain.request)

    def _to_voicemail(self, mailbox: str, owner: Account, chain: _Chain) -> Route:
        route = self.inner.to_media(mailbox, VOICEMAIL_APP, chain.request.call_id)
        if not isinstance(route, Forward):
            return route
        call_id = chain.request.call_id
        caller = chain.caller
        self.voicemail.expect(call_id, mailbox, caller.number, caller.name)
        route.callee = owner  # the CDR shows the call reached the extension's mailbox
        route.on_end.append(lambda: self.voicemail.forget(call_id))
        return route

    async def targets(self, number: str) -> list[tuple[str, Flow]]:
        contacts = await self.location.lookup(number)
        return [(c.uri, flow) for c in contacts if (flow := c.flow(self.instance))]

    # -- feature codes -----------------------------------------------------------------------

    async def _feature_code(self, caller: Account, decision: ToFeature, request: Request) -> Route:
        action = decision.action
        if action is FeatureAction.PICKUP and self.pickup is not None:
            return self.pickup.route(caller, decision.argument, request)
        if action is FeatureAction.VOICEMAIL:
            return self._media(caller, MAILBOX_APP, request, mailbox=caller.number)
        if action is FeatureAction.FORWARD_ON:
            target = decision.argument
            if target == caller.number:
                return Refusal(403, Disposition.REJECTED, "Forbidden (forwarding to itself)")
            changes: dict[str, object] = {"forward_always": target}
            prompt = "forwarding_on"
        elif action in SETTING_CODES:
            changes, prompt = SETTING_CODES[action]
        else:
            return None  # not ours (echo, tone, pickup): the dial-plan router's
        await self.features.update(caller.number, **changes)
        return self._media(caller, ANNOUNCE_APP, request, announce=prompt)

    def _to_ivr(self, menu: IvrMenu, request: Request) -> Route:
        assert self.ivr is not None
        route = self.inner.to_media(menu.number, IVR_APP, request.call_id)
        if isinstance(route, Forward):
            call_id, ivr = request.call_id, self.ivr
            ivr.expect(call_id, menu)
            route.on_end.append(lambda: ivr.forget(call_id))
        return route

    def _forget_announcement(self, call_id: str) -> None:
        self.announcements.pop(call_id, None)

    def _media(
        self,
        caller: Account,
        feature: MediaFeature,
        request: Request,
        *,
        mailbox: str = "",
        announce: str = "",
    ) -> Route:
        call_id = request.call_id
        route = self.inner.to_media(request.uri.user or "", feature, call_id)  # type: ignore[union-attr]
        if not isinstance(route, Forward):
            if announce:
                # Saved all the same; only the spoken confirmation is missing.
                return Refusal(503, Disposition.FAILED, "Service Unavailable (setting saved)")
            return route
        if mailbox:
            self.voicemail.expect(call_id, mailbox, caller.number, caller.name)
            route.on_end.append(lambda: self.voicemail.forget(call_id))
        if announce:
            self.announcements[call_id] = (announce, caller.number)
            route.on_end.append(lambda: self._forget_announcement(call_id))
        return route
