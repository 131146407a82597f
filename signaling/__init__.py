"""WebSocket signalling shared by the services: rooms of peers, SIP over WebSocket.

Narrow interface: ``app[SIGNALING_HUB].add_channel(name, channel, timeout=...)``
serves a channel at ``/signaling/<name>``; messages are the models of
:mod:`signaling.protocol`.
"""

from __future__ import annotations

from aiohttp import web

from signaling.hub import Channel, Connection, SignalingHub

# The hub must exist before the services that mount routes on it.
SETUP_ORDER = 10

SIGNALING_HUB = web.AppKey("signaling_hub", SignalingHub)


def setup(app: web.Application) -> None:
    hub = SignalingHub()
    app[SIGNALING_HUB] = hub
    app.router.add_get("/signaling/{channel}", hub.websocket)


__all__ = ["SETUP_ORDER", "SIGNALING_HUB", "Channel", "Connection", "SignalingHub", "setup"]
