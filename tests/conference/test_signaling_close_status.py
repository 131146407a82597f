"""A signalling socket the browser closes, cleanly or by vanishing, is a 101 in the
metrics, not a 500, and its venue still leaves the room."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest

ROUTE = 'route="/signaling/{channel}"'


def _statuses(server: Any) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in generate_latest(server.ctx.metrics).decode().splitlines():
        if line.startswith("unicomm_http_requests_total") and ROUTE in line:
            status = line.split('status="')[1].split('"')[0]
            found[status] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_a_closed_signalling_socket_is_not_counted_as_a_server_error(
    conference_server: Any, how: str
) -> None:
    await conference_server.add_room("rc", pin="2468")
    ws_url = conference_server.base_url.replace("http", "ws") + "/signaling/conference"
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(ws_url)
        await ws.send_json({"type": "join", "room": "rc", "venue": "Gone", "pin": "2468"})
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "joined"
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "offer"
        if how == "abort":
            # The browser's tab or network went away: no close frame, TCP reset.
            assert ws._response is not None and ws._response.connection is not None
            transport = ws._response.connection.transport
            assert transport is not None
            transport.abort()
        else:
            await ws.close()

        async def settled() -> bool:
            members = conference_server.runtime.rooms.get("rc")
            gone = members is None or "Gone" not in members.members
            return gone and sum(_statuses(conference_server).values()) >= 1

        deadline = asyncio.get_running_loop().time() + 10
        while not await settled():
            assert asyncio.get_running_loop().time() < deadline, _statuses(conference_server)
            await asyncio.sleep(0.1)
    assert _statuses(conference_server) == {"101": 1.0}
