"""The kiosk API through HTTP: pairing, feed with ETag, uploads, validation, alerts, fleet."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from core.context import AppContext
from core.models import Role
from kiosk.models import ContentItem, Kiosk, KioskMedia


async def operator(ctx: AppContext, client: TestClient, username: str = "op") -> dict[str, str]:
    async with ctx.db.session() as session:
        await ctx.auth.create_user(session, username, "password-123", Role.OPERATOR)
    response = await client.post(
        "/api/auth/login", json={"username": username, "password": "password-123"}
    )
    assert response.status == 200, await response.text()
    return {"X-CSRF-Token": (await response.json())["csrf_token"]}


async def pair(
    client: TestClient, csrf: dict[str, str], name: str, group: str | None
) -> dict[str, Any]:
    """A kiosk (no console cookie) asks for a code, the operator approves it, the kiosk
    collects its token."""
    async with aiohttp.ClientSession() as kiosk:
        started = await (await kiosk.post(client.make_url("/kiosk/api/pairings"))).json()
        claim_url = client.make_url("/kiosk/api/pairings/claim")
        waiting = await kiosk.post(claim_url, json={"claim": started["claim"]})
        assert waiting.status == 202
        approved = await client.post(
            "/api/kiosk/pairings/approve",
            json={"code": started["code"], "name": name, "group": group},
            headers=csrf,
        )
        assert approved.status == 201, await approved.text()
        claimed = await kiosk.post(claim_url, json={"claim": started["claim"]})
        assert claimed.status == 200
        again = await kiosk.post(claim_url, json={"claim": started["claim"]})
        assert again.status == 404  # a claim gives its token once
        body: dict[str, Any] = await claimed.json()
        return body


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBM = b"\x1a\x45\xdf\xa3" + b"\x00" * 64


async def _setup_content(client: TestClient, csrf: dict[str, str]) -> dict[str, int]:
    for code, district in (("G1", "东城"), ("G2", "西城")):
        r = await client.post(
            "/api/kiosk/groups",
            json={"code": code, "name": code, "district": district},
            headers=csrf,
        )
        assert r.status == 201
    ids = {}
    for key, body in {
        "notice": {
            "kind": "notice",
            "category": "notices",
            "title_zh": "停水通知",
            "title_en": "Water cut",
            "body_zh": "<script>alert(1)</script>",
        },
        "guide": {
            "kind": "guide",
            "category": "guides",
            "title_zh": "办理居住证",
            "title_en": "Residence permit",
            "steps": [{"zh": "预约", "en": "Book"}],
            "documents": [{"zh": "身份证", "en": "ID card"}],
        },
        "g2only": {"kind": "notice", "category": "notices", "title_zh": "西城通知"},
        "expired": {
            "kind": "notice",
            "category": "notices",
            "title_zh": "过期",
            "valid_until": "2020-01-01T00:00:00Z",
        },
    }.items():
        r = await client.post("/api/kiosk/items", json=body, headers=csrf)
        assert r.status == 201, await r.text()
        ids[key] = (await r.json())["id"]
    for name, items, groups in (
        ("all", [ids["notice"], ids["guide"], ids["expired"]], []),
        ("west", [ids["g2only"]], ["G2"]),
    ):
        r = await client.post(
            "/api/kiosk/playlists",
            json={"name": name, "item_ids": items, "groups": groups},
            headers=csrf,
        )
        assert r.status == 201, await r.text()
    return ids


async def test_pairing_feed_etag_and_targeting(app_context: AppContext, client: TestClient) -> None:
    csrf = await operator(app_context, client)
    ids = await _setup_content(client, csrf)
    paired = await pair(client, csrf, "长安街 1 号", "G1")
    token = {"Authorization": f"Bearer {paired['token']}"}
    feed = await client.get("/kiosk/api/feed", headers=token)
    assert feed.status == 200
    body = await feed.json()
    assert [item["id"] for item in body["items"]] == [ids["notice"], ids["guide"]]
    assert body["items"][0]["body"]["zh"] == "<script>alert(1)</script>"  # text, rendered as text
    assert body["items"][1]["steps"] == [{"zh": "预约", "en": "Book"}]
    again = await client.get(
        "/kiosk/api/feed", headers={**token, "If-None-Match": feed.headers["ETag"]}
    )
    assert again.status == 304
    # The portal reads the same feed for a group, without a login.
    client.session.cookie_jar.clear()
    portal = await client.get("/api/kiosk/feed?group=G2")
    assert [i["id"] for i in (await portal.json())["items"]] == [
        ids["notice"],
        ids["guide"],
        ids["g2only"],
    ]
    assert (await client.get("/api/kiosk/feed?group=NOPE")).status == 404
    # A used claim gives nothing a second time.
    documented = json.dumps(await (await client.get("/api/openapi.json")).json())
    assert "/api/kiosk/feed" in documented and "/api/kiosk/media" in documented


def _builds(ctx: AppContext) -> float:
    return ctx.metrics.get_sample_value("unicomm_kiosk_feed_builds_total") or 0.0


async def test_feed_is_cached_per_group_and_changes_invalidate_it(
    app_context: AppContext, client: TestClient
) -> None:
    csrf = await operator(app_context, client)
    ids = await _setup_content(client, csrf)
    token = {"Authorization": f"Bearer {(await pair(client, csrf, 'k1', 'G1'))['token']}"}
    other = {"Authorization": f"Bearer {(await pair(client, csrf, 'k2', 'G1'))['token']}"}
    names = {token["Authorization"]: "k1", other["Authorization"]: "k2"}

    async def etag(headers: dict[str, str], known: str = "", status: int = 200) -> str:
        if known:
            headers = {**headers, "If-None-Match": known}
        response = await client.get("/kiosk/api/feed", headers=headers)
        assert response.status == status, await response.text()
        if status == 200:
            body = await response.json()
            assert body["version"] == response.headers["ETag"].strip('"')
            # The cached body is shared; each kiosk still reads its own name in it.
            assert body["kiosk"]["name"] == names[headers["Authorization"]]
        return response.headers["ETag"]

    first = await etag(token)
    built = _builds(app_context)
    # Unchanged: 304 for this kiosk, the same feed for another of its group, and the
    # portal's view of the group, all without reading the content again.
    assert await etag(token, first, 304) == first
    assert await etag(other) == first
    assert await etag(other, first, 304) == first
    portal = await client.get("/api/kiosk/feed?group=G1", headers={"If-None-Match": first})
    assert portal.status == 304
    assert _builds(app_context) == built
    hits = app_context.metrics.get_sample_value(
        "unicomm_kiosk_feed_lookups_total", {"result": "hit"}
    )
    assert hits is not None and hits >= 4

    # Each kind of change gives a new version at once (one build serves both kiosks).
    versions = [first]
    changes = [
        (
            "PUT",
            f"/api/kiosk/items/{ids['notice']}",
            {
                "kind": "notice",
                "category": "notices",
                "title_zh": "停水通知（更新）",
            },
        ),
        ("POST", "/api/kiosk/playlists", {"name": "more", "item_ids": [ids["g2only"]]}),
        ("POST", "/api/kiosk/alerts", {"headline": "演练"}),
        ("DELETE", f"/api/kiosk/items/{ids['guide']}", None),
    ]
    for method, path, body in changes:
        done = await client.request(method, path, json=body, headers=csrf)
        assert done.status < 300, await done.text()
        new = await etag(token, versions[-1])
        assert new not in versions, path
        assert await etag(other, new, 304) == new
        versions.append(new)
    feed = await (await client.get("/kiosk/api/feed", headers=token)).json()
    assert [a["headline"] for a in feed["alerts"]] == ["演练"]
    assert "停水通知（更新）" in [i["title"]["zh"] for i in feed["items"]]
    # A new group drops the cache (its kiosks' places may be new), the feed stays the same.
    built = _builds(app_context)
    added = await client.post("/api/kiosk/groups", json={"code": "G3", "name": "G3"}, headers=csrf)
    assert added.status == 201
    assert await etag(token, versions[-1], 304) == versions[-1]
    assert _builds(app_context) == built + 1
    # A CAP alert from sms/ on the bus: every node clears its feeds when it records it.
    from sms.events import AlertPublished

    await app_context.bus.publish(
        AlertPublished(identifier="cap-9", sender="city", headline="地震")
    )
    for _ in range(50):
        response = await client.get(
            "/kiosk/api/feed", headers={**token, "If-None-Match": versions[-1]}
        )
        if response.status == 200:
            break
        await asyncio.sleep(0.05)
    assert "地震" in [a["headline"] for a in (await response.json())["alerts"]]


async def test_bad_pairing_and_tokens_change_nothing(
    app_context: AppContext, client: TestClient
) -> None:
    csrf = await operator(app_context, client)
    unknown = await client.post(
        "/api/kiosk/pairings/approve", json={"code": "ZZZZZZ", "name": "x"}, headers=csrf
    )
    assert (
        unknown.status == 404
        and "no kiosk is showing the pairing code" in (await unknown.json())["error"]
    )
    forged = await client.get("/kiosk/api/feed", headers={"Authorization": "Bearer ud_forged"})
    assert forged.status == 401
    nothing = await client.get("/kiosk/api/feed")
    assert nothing.status == 401
    client.session.cookie_jar.clear()
    claim = await client.post("/kiosk/api/pairings/claim", json={"claim": "x" * 40})
    assert claim.status == 404
    csrf = await operator(app_context, client, "op2")
    paired = await pair(client, csrf, "k1", None)
    kiosk_id = paired["kiosk"]["id"]
    revoked = await client.post(f"/api/kiosk/fleet/{kiosk_id}/revoke", headers=csrf)
    assert revoked.status == 200
    after = await client.get(
        "/kiosk/api/feed", headers={"Authorization": f"Bearer {paired['token']}"}
    )
    assert after.status == 401
    # An operator token is no kiosk token.
    async with app_context.db.session() as session:
        assert await session.scalar(select(func.count(Kiosk.id))) == 1


async def test_bad_content_is_refused_and_nothing_is_written(
    app_context: AppContext, client: TestClient
) -> None:
    csrf = await operator(app_context, client)
    window = await client.post(
        "/api/kiosk/items",
        headers=csrf,
        json={
            "kind": "notice",
            "category": "notices",
            "title_zh": "x",
            "valid_from": "2026-12-02T00:00:00Z",
            "valid_until": "2026-12-01T00:00:00Z",
        },
    )
    assert window.status == 422 and "ends before it starts" in (await window.json())["error"]
    guide = await client.post(
        "/api/kiosk/items",
        headers=csrf,
        json={"kind": "guide", "category": "guides", "title_zh": "x"},
    )
    assert guide.status == 422 and "step" in (await guide.json())["error"]
    image = await client.post(
        "/api/kiosk/items",
        headers=csrf,
        json={"kind": "image", "category": "x", "title_zh": "x", "media_id": 99},
    )
    assert image.status == 422
    schedule = await client.post(
        "/api/kiosk/playlists",
        headers=csrf,
        json={"name": "p", "rules": [{"dayparts": ["25:00-26:00"]}]},
    )
    assert schedule.status == 422 and "daypart" in (await schedule.json())["error"]
    # Uploads: the type is checked by content, the size as it streams.
    wrong = await client.post(
        "/api/kiosk/media",
        data=b"GIF89a" + b"\x00" * 64,
        headers={**csrf, "Content-Type": "image/png"},
    )
    assert wrong.status == 415 and "not image/png" in (await wrong.json())["error"]
    exe = await client.post(
        "/api/kiosk/media",
        data=b"MZ" + b"\x00" * 64,
        headers={**csrf, "Content-Type": "application/x-msdownload"},
    )
    assert exe.status == 415
    app_context.settings.kiosk_max_upload_mb = 1

    async def big() -> object:
        yield WEBM
        for _ in range(20):
            yield b"\x00" * 65536
            await asyncio.sleep(0)

    oversized = await client.post(
        "/api/kiosk/media", data=big(), headers={**csrf, "Content-Type": "video/webm"}
    )
    assert oversized.status == 413
    anonymous = await client.post(
        "/api/kiosk/media", data=PNG, headers={"Content-Type": "image/png"}
    )
    assert anonymous.status in (401, 403)
    async with app_context.db.session() as session:
        assert await session.scalar(select(func.count(ContentItem.id))) == 0
        assert await session.scalar(select(func.count(KioskMedia.id))) == 0
    media_dir = app_context.settings.path("kiosk", "media")
    assert not media_dir.exists() or not any(media_dir.iterdir())
    good = await client.post(
        "/api/kiosk/media?name=a.png", data=PNG, headers={**csrf, "Content-Type": "image/png"}
    )
    assert good.status == 201
    media = await good.json()
    served = await client.get(media["url"], headers={"Range": "bytes=2-5"})
    assert served.status == 206 and await served.read() == PNG[2:6]
    item = await client.post(
        "/api/kiosk/items",
        headers=csrf,
        json={"kind": "image", "category": "pictures", "title_zh": "图", "media_id": media["id"]},
    )
    assert item.status == 201


async def test_alerts_reach_the_live_socket_and_clear(
    app_context: AppContext, client: TestClient
) -> None:
    csrf = await operator(app_context, client)
    await client.post("/api/kiosk/groups", json={"code": "G1", "name": "G1"}, headers=csrf)
    paired = await pair(client, csrf, "k1", "G1")
    socket = await client.ws_connect("/kiosk/api/live")
    await socket.send_str(json.dumps({"token": paired["token"]}))
    assert (await socket.receive_json(timeout=5))["type"] == "hello"
    published = await client.post(
        "/api/kiosk/alerts", headers=csrf, json={"headline": "暴雨红色预警", "expires_minutes": 30}
    )
    assert published.status == 201
    alert_id = (await published.json())["id"]
    message = await socket.receive_json(timeout=2)
    assert message["type"] == "alert" and message["alert"]["headline"] == "暴雨红色预警"
    feed = await (
        await client.get("/kiosk/api/feed", headers={"Authorization": f"Bearer {paired['token']}"})
    ).json()
    assert [a["id"] for a in feed["alerts"]] == [alert_id]
    other_group = await client.post(
        "/api/kiosk/alerts", headers=csrf, json={"headline": "x", "groups": ["NOPE"]}
    )
    assert other_group.status == 422
    cancelled = await client.post(f"/api/kiosk/alerts/{alert_id}/cancel", headers=csrf)
    assert cancelled.status == 200
    assert (await socket.receive_json(timeout=2)) == {
        "type": "alert_cleared",
        "alert": {"id": alert_id},
    }
    # An alert from sms/ on the bus takes over too, recorded once.
    from sms.events import AlertPublished

    await app_context.bus.publish(
        AlertPublished(identifier="cap-1", sender="city", headline="地震预警", severity="Extreme")
    )
    message = await socket.receive_json(timeout=2)
    assert message["type"] == "alert" and message["alert"]["headline"] == "地震预警"
    # A city-wide area that names no kiosk district takes over every kiosk too.
    await app_context.bus.publish(
        AlertPublished(identifier="cap-2", sender="city", headline="防空演练", area="全市")
    )
    message = await socket.receive_json(timeout=2)
    assert message["type"] == "alert" and message["alert"]["headline"] == "防空演练"
    bad = await client.ws_connect("/kiosk/api/live")
    await bad.send_str(json.dumps({"token": "ud_forged"}))
    closing = await bad.receive(timeout=5)
    assert bad.close_code == 4401 or closing.data == 4401
    await socket.close()


async def test_heartbeat_fleet_and_plays(app_context: AppContext, client: TestClient) -> None:
    csrf = await operator(app_context, client)
    paired = await pair(client, csrf, "k1", None)
    token = {"Authorization": f"Bearer {paired['token']}"}
    now = dt.datetime.now(dt.UTC)
    beat = await client.post(
        "/kiosk/api/heartbeat",
        headers=token,
        json={
            "app_version": "1",
            "content_version": "abc",
            "uptime_seconds": 5,
            "last_rendered_at": now.isoformat(),
            "cache_state": {"media_cached": 2},
            "plays": {"7:shown": 3},
        },
    )
    assert beat.status == 200, await beat.text()
    board = await (await client.get("/api/kiosk/fleet")).json()
    assert board[0]["state"] == "online" and board[0]["content_version"] == "abc"
    stale = await client.post(
        "/kiosk/api/heartbeat",
        headers=token,
        json={"last_rendered_at": (now - dt.timedelta(hours=1)).isoformat()},
    )
    assert stale.status == 200
    assert (await (await client.get("/api/kiosk/fleet")).json())[0]["state"] == "stale"
    day = now.astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    csv = await client.get(
        f"/api/kiosk/plays?day_from={day}&day_until={day}", headers={"Accept": "text/csv"}
    )
    assert (await csv.text()).splitlines() == [
        "day,kiosk,item_id,action,count",
        f'{day},"k1",7,shown,3',
    ]
    page = await client.get("/console/kiosk")
    assert page.status == 200 and "k1" in await page.text()


async def test_heartbeat_screenshot_is_checked_and_shown_to_staff_only(
    app_context: AppContext, client: TestClient
) -> None:
    csrf = await operator(app_context, client)
    kiosk_id = (await pair(client, csrf, "k1", None))["kiosk"]["id"]
    token = {"Authorization": f"Bearer {(await pair(client, csrf, 'k3', None))['token']}"}
    # k3 beats; k1 never sends a picture.
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    refusals = {
        "data:image/jpeg;base64," + base64.b64encode(PNG).decode(): (422, "is not image/jpeg"),
        "data:image/gif;base64,R0lGODlh": (422, "JPEG, PNG or WebP"),
        "data:image/jpeg;base64,@@@@": (422, "JPEG, PNG or WebP"),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff" + b"\x00" * 70_000).decode(): (
            413,
            "64 KiB",
        ),
    }
    for bad, (status, reason) in refusals.items():
        refused = await client.post("/kiosk/api/heartbeat", headers=token, json={"screenshot": bad})
        assert refused.status == status, await refused.text()
        assert reason in (await refused.json())["error"]
    board = {k["name"]: k for k in await (await client.get("/api/kiosk/fleet")).json()}
    assert board["k3"]["state"] == "never"  # a refused heartbeat changed nothing
    assert board["k3"]["screenshot_url"] is None

    beat = await client.post("/kiosk/api/heartbeat", headers=token, json={"screenshot": data_url})
    assert beat.status == 200, await beat.text()
    # Later heartbeats without a picture keep the last one.
    assert (await client.post("/kiosk/api/heartbeat", headers=token, json={})).status == 200
    board = {k["name"]: k for k in await (await client.get("/api/kiosk/fleet")).json()}
    url = board["k3"]["screenshot_url"]
    assert url.startswith(f"/api/kiosk/fleet/{board['k3']['id']}/screenshot")
    assert board["k3"]["screenshot_at"] is not None
    assert board["k1"]["screenshot_url"] is None
    shot = await client.get(url)
    assert shot.status == 200 and shot.content_type == "image/jpeg"
    assert await shot.read() == jpeg
    assert (await client.get(f"/api/kiosk/fleet/{kiosk_id}/screenshot")).status == 404
    page = await (await client.get("/console/kiosk")).text()
    assert f'<img src="{url}"' in page
    # Not for the kiosk itself, nor for anyone without a staff login.
    assert (await client.get(url, headers=token)).status == 401
    client.session.cookie_jar.clear()
    assert (await client.get(url)).status == 401


async def test_console_edits_and_deletes_items_and_playlists(
    app_context: AppContext, client: TestClient
) -> None:
    csrf = await operator(app_context, client)
    item = await (
        await client.post(
            "/api/kiosk/items",
            json={
                "kind": "guide",
                "category": "guides",
                "title_zh": "居住证<办理>",
                "steps": [{"zh": "预约", "en": "Book"}],
            },
            headers=csrf,
        )
    ).json()
    created = await client.post(
        "/api/kiosk/playlists",
        json={"name": "早间", "item_ids": [item["id"]], "districts": ["东城"]},
        headers=csrf,
    )
    playlist = await created.json()

    # The page carries each record for its edit button (escaped) and a delete button, zh/en.
    for lang, edit, delete in (("zh", "编辑", "删除"), ("en", "Edit", "Delete")):
        client.session.cookie_jar.update_cookies({"lang": lang})
        page = await (await client.get("/console/kiosk")).text()
        assert f'data-delete="/api/kiosk/items/{item["id"]}"' in page
        assert f'data-delete="/api/kiosk/playlists/{playlist["id"]}"' in page
        assert f">{edit}</button>" in page and f">{delete}</button>" in page
        assert "<办理>" not in page  # the title only ever appears escaped
    assert "取消编辑" in page or "Cancel editing" in page

    # Delete a playlist: 204, gone, its items stay; again: 404; without CSRF: refused.
    assert (await client.delete(f"/api/kiosk/playlists/{playlist['id']}")).status == 403
    removed = await client.delete(f"/api/kiosk/playlists/{playlist['id']}", headers=csrf)
    assert removed.status == 204
    assert await (await client.get("/api/kiosk/playlists")).json() == []
    assert [i["id"] for i in await (await client.get("/api/kiosk/items")).json()] == [item["id"]]
    again = await client.delete(f"/api/kiosk/playlists/{playlist['id']}", headers=csrf)
    assert again.status == 404
