"""Video conference: main venue, sub-venues and the emergency command room.

Rooms in the database, signalling on the hub's ``conference`` channel
(``/signaling/conference``), media through a forwarding SFU on aiortc
(``conference.sfu``), the browser client at ``/conference/<room>``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from aiohttp import web

from conference import api
from conference.cli import add_cli
from conference.messages import MESSAGES
from conference.runtime import ConferenceRuntime, Handover, PresenceChanged
from core.web import CONSOLE, CTX, I18N
from signaling import SIGNALING_HUB

# Also the order of the console's navigation.
SETUP_ORDER = 30


def setup(app: web.Application) -> None:
    app[I18N].add(MESSAGES)
    app[CONSOLE].add_templates("conference", Path(__file__).parent / "templates")
    runtime = ConferenceRuntime(app[CTX])
    app[api.CONFERENCE_RUNTIME] = runtime
    app[SIGNALING_HUB].add_channel(
        "conference", runtime, timeout=app[CTX].settings.conference_peer_timeout
    )
    api.mount(app)
    runtime.handover = _vod_handover(app)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await runtime.start()
        yield
        await app[SIGNALING_HUB].drain()
        await runtime.stop()

    app.cleanup_ctx.append(lifecycle)


def _vod_handover(app: web.Application) -> Handover | None:
    """vod's narrow interface for meeting recordings, if vod is installed (rule 1)."""
    try:
        from vod import import_recording
    except ImportError:
        return None

    async def hand_over(path: Path, *, title: str, broadcast_at: dt.datetime) -> int:
        return await import_recording(app, path, title=title, broadcast_at=broadcast_at)

    return hand_over


__all__ = ["SETUP_ORDER", "ConferenceRuntime", "PresenceChanged", "add_cli", "setup"]
