"""SMS alerts: meeting notices and urgent alerts to groups of phones.

Escalation (:mod:`sms.escalation`): recipients who have not acknowledged after N
minutes get a phone call from the exchange reading the alert (``voip.place_call``,
when voip is installed; pressing 1 acknowledges), and/or the alert goes to a backup group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from core.web import CONSOLE, CTX, I18N
from sms import api
from sms.cli import add_cli
from sms.escalation import Dialer, DialResult
from sms.events import AlertPublished
from sms.messages import MESSAGES
from sms.runtime import SMS_RUNTIME, SmsRuntime

# Also the order of the console's navigation.
SETUP_ORDER = 50


def setup(app: web.Application) -> None:
    app[I18N].add(MESSAGES)
    app[CONSOLE].add_templates("sms", Path(__file__).parent / "templates")
    runtime = SmsRuntime.create(app[CTX])
    runtime.escalation.dialer = voip_dialer(app)
    app[SMS_RUNTIME] = runtime
    api.mount(app)

    async def start_engine(app: web.Application) -> None:
        runtime.ctx.spawn("sms.engine", runtime.engine.run)
        runtime.ctx.spawn("sms.escalation", runtime.escalation.run)

    async def stop_provider(app: web.Application) -> None:
        await runtime.provider.close()

    app.on_startup.append(start_engine)
    app.on_cleanup.append(stop_provider)


def voip_dialer(app: web.Application) -> Dialer | None:
    """voip's narrow interface for escalation calls, if voip is installed (rule 1)."""
    try:
        from voip import CollectDigits, place_call
    except ImportError:
        return None

    async def dial(
        *,
        number: str,
        text: str,
        language: str,
        caller_name: str,
        ring_seconds: float,
        max_seconds: float,
        before_dial: Callable[[], Awaitable[bool]],
        ack_key: str,
        ack_reply: str,
        on_ack: Callable[[str], Awaitable[bool]],
    ) -> DialResult:
        outcome = await place_call(
            app,
            number,
            text,
            language=language,
            caller_name=caller_name,
            ring_seconds=ring_seconds,
            max_seconds=max_seconds,
            before_dial=before_dial,
            collect=CollectDigits(accept=ack_key, reply=ack_reply, on_accept=on_ack),
        )
        return DialResult(
            str(outcome.result),
            outcome.dialled,
            outcome.sip_status,
            outcome.detail,
            outcome.call_id,
            outcome.talk_seconds,
            outcome.digits,
        )

    return dial


__all__ = ["SETUP_ORDER", "AlertPublished", "add_cli", "setup"]
