"""SMS alerts: meeting notices and urgent alerts to groups of phones.

Escalation by phone call (recipients who have not acknowledged get a call from the
exchange) waits for the telephony service's ``voip.place_call``; it is not built yet.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from core.web import CONSOLE, CTX, I18N
from sms import api
from sms.cli import add_cli
from sms.events import AlertPublished
from sms.messages import MESSAGES
from sms.runtime import SMS_RUNTIME, SmsRuntime

# Also the order of the console's navigation.
SETUP_ORDER = 50


def setup(app: web.Application) -> None:
    app[I18N].add(MESSAGES)
    app[CONSOLE].add_templates("sms", Path(__file__).parent / "templates")
    runtime = SmsRuntime.create(app[CTX])
    app[SMS_RUNTIME] = runtime
    api.mount(app)

    async def start_engine(app: web.Application) -> None:
        runtime.ctx.spawn("sms.engine", runtime.engine.run)

    async def stop_provider(app: web.Application) -> None:
        await runtime.provider.close()

    app.on_startup.append(start_engine)
    app.on_cleanup.append(stop_provider)


__all__ = ["SETUP_ORDER", "AlertPublished", "add_cli", "setup"]
