"""The running pieces of the sms service on one node: provider, engine, escalation, callbacks."""

from __future__ import annotations

import base64
import functools
import hmac
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from core.context import AppContext
from sms.engine import DeliveryEngine
from sms.escalation import EscalationRunner
from sms.providers import Provider, make_provider, public_base_url


@dataclass
class SmsRuntime:
    ctx: AppContext
    provider: Provider
    engine: DeliveryEngine
    public_url: str
    escalation: EscalationRunner

    @classmethod
    def create(cls, ctx: AppContext) -> SmsRuntime:
        settings = ctx.settings
        provider = make_provider(settings)
        base = public_base_url(settings)
        engine = DeliveryEngine(
            ctx.db, provider, settings, ctx.state, base, node=settings.node_name
        )
        # The dialer (voip.place_call) is bound by sms.setup when voip is installed.
        escalation = EscalationRunner(
            ctx.db, None, node=settings.node_name, on_new_recipients=engine.wake.set
        )
        escalation.call_retries = settings.sms_call_retries
        escalation.call_retry_seconds = settings.sms_call_retry_minutes * 60
        return cls(ctx, provider, engine, base, escalation)

    def signature_valid(self, request: web.Request, params: dict[str, str]) -> bool:
        """X-Twilio-Signature over the URL the provider called (our public URL) and the form."""
        token = self.ctx.settings.twilio_auth_token
        signature = request.headers.get("X-Twilio-Signature", "")
        if not token or not signature:
            return False
        url = self.public_url + request.path_qs
        # Fast path: Twilio's HMAC-SHA1 over the URL exactly as we gave it plus the sorted
        # form (one value per name here), computed once. The library's validate() parses
        # the URL and signs it twice (with and without a port); it stays the fallback, so
        # what it accepts is still accepted and nothing else is.
        if "bodySHA256" not in url and hmac.compare_digest(
            _sign(token, url, params), signature.encode()
        ):
            return True
        return bool(_validator(token).validate(url, params, signature))


def _sign(token: str, url: str, params: dict[str, str]) -> bytes:
    text = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.digest(token.encode(), text.encode(), "sha1"))


@functools.lru_cache(maxsize=4)
def _validator(token: str) -> Any:
    from twilio.request_validator import RequestValidator

    return RequestValidator(token)


SMS_RUNTIME = web.AppKey("sms_runtime", SmsRuntime)
