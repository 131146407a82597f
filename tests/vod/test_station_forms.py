"""The console's station forms over HTTP: add, edit with capture windows, delete, in zh
and en, CSRF-protected; bad input is answered with the reason and changes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from conftest import Staff
from sqlalchemy import func, select

from core.models import Role
from vod.models import Capture, CaptureState, Item, Kind, Level, Schedule, Station

PAGE = "/console/vod"
URL = "http://127.0.0.1:9/live/news.m3u8"


async def login(staff: Staff, username: str, role: Role) -> str:
    """A console session (cookie) for a new login; returns its CSRF token."""
    async with staff.ctx.db.session() as session:
        await staff.ctx.auth.create_user(session, username, "password-1234", role)
    staff.client.session.cookie_jar.clear()
    response = await staff.client.post(
        "/api/auth/login", json={"username": username, "password": "password-1234"}
    )
    assert response.status == 200, await response.text()
    token: str = (await response.json())["csrf_token"]
    return token


def station_form(csrf: str | None, **fields: Any) -> list[tuple[str, str]]:
    """A form as the browser sends it: fields, then the window rows (parallel fields)."""
    windows = fields.pop("windows", [])
    values: dict[str, Any] = {
        "name": "市广播电视台新闻频道",
        "level": "city",
        "kind": "radio",
        "stream_url": URL,
        "retention_days": "10",
        "enabled": "on",
        **fields,
    }
    form = [(key, str(value)) for key, value in values.items() if value is not None]
    if csrf is not None:
        form.insert(0, ("csrf_token", csrf))
    for start, end, days, programme in [*windows, ("", "", "1234567", "")]:
        form += [
            ("window_start", start),
            ("window_end", end),
            ("window_days", days),
            ("window_programme", programme),
        ]
    return form


async def snapshot(staff: Staff) -> list[Any]:
    async with staff.ctx.db.session() as session:
        stations = (await session.execute(select(Station).order_by(Station.code))).scalars()
        schedules = (await session.execute(select(Schedule).order_by(Schedule.id))).scalars()
        return [
            [
                (s.code, s.name, s.level, s.kind, s.stream_url, s.retention_days, s.enabled)
                for s in stations
            ],
            [
                (s.station_id, s.start_time, s.duration_seconds, s.weekdays, s.programme)
                for s in schedules
            ],
        ]


async def post(staff: Staff, path: str, form: list[tuple[str, str]]) -> tuple[int, str, str]:
    response = await staff.client.post(path, data=form, allow_redirects=False)
    return response.status, response.headers.get("Location", ""), await response.text()


async def test_station_forms(staff: Staff) -> None:
    csrf = await login(staff, "chief", Role.OPERATOR)
    for lang, label, add in (
        ("en", "Daily capture windows", "Add"),
        ("zh", "每日录制时段", "添加"),
    ):
        staff.client.session.cookie_jar.update_cookies({"lang": lang})
        page = await (await staff.client.get(PAGE)).text()
        assert 'id="station-add"' in page and f'name="csrf_token" value="{csrf}"' in page
        assert label in page and f">{add}</button>" in page
    staff.client.session.cookie_jar.update_cookies({"lang": "en"})

    # Add a station with a daily window: saved, and its next recordings planned at once.
    status, location, _ = await post(
        staff,
        f"{PAGE}/stations",
        station_form(csrf, code="CITY2", windows=[("19:00", "19:30", "1234567", "新闻联播")]),
    )
    assert status == 303 and location == f"{PAGE}?station_saved=CITY2#stations"
    async with staff.ctx.db.session() as session:
        station = await session.scalar(select(Station).where(Station.code == "CITY2"))
        assert station is not None
        assert (station.level, station.kind, station.retention_days, station.stream_url) == (
            Level.CITY,
            Kind.RADIO,
            10,
            URL,
        )
        (window,) = (await session.scalars(select(Schedule))).all()
        assert (window.start_time, window.duration_seconds, window.weekdays) == (
            "19:00",
            1800,
            "1234567",
        )
        assert window.programme == "新闻联播"
        planned = await session.scalar(
            select(func.count(Capture.id)).where(Capture.schedule_id == window.id)
        )
        assert planned and planned >= 1
    page = await (await staff.client.get(f"{PAGE}?station_saved=CITY2")).text()
    assert "Station CITY2 saved." in page and "19:00–19:30" in page

    # Bad input: the reason, what was typed kept, nothing written.
    before = await snapshot(staff)
    refusals = [
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", windows=[("20:00", "19:00", "12345", "")]),
            422,
            "capture window 1: it ends (19:00) before it starts (20:00)",
        ),
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", level="galactic"),
            422,
            "&#39;galactic&#39; is not a level; choose central, provincial or city",
        ),
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", kind="tv-ish"),
            422,
            "is not a kind",
        ),
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", stream_url="", windows=[("07:00", "07:30", "1", "")]),
            422,
            "capture windows need a stream URL",
        ),
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", stream_url="file:///etc/passwd"),
            422,
            "a stream URL is http(s), rtmp(s), rtsp, rtp, udp or srt",
        ),
        (f"{PAGE}/stations", station_form(csrf, code="NEW", retention_days="0"), 422, "retention"),
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", windows=[("7h", "8h", "1", "")]),
            422,
            "times are HH:MM",
        ),
        (
            f"{PAGE}/stations",
            station_form(csrf, code="NEW", windows=[("07:00", "08:00", "189", "")]),
            422,
            "weekdays are digits 1 (Monday) to 7 (Sunday)",
        ),
        (f"{PAGE}/stations", station_form(csrf, code="bad code!"), 422, "a code is 1-32"),
        (f"{PAGE}/stations", station_form(csrf, code="CITY2"), 409, "already exists"),
        (
            f"{PAGE}/stations/CITY2",
            station_form(csrf, windows=[("19:30", "19:00", "1234567", "")]),
            422,
            "it ends (19:00) before it starts (19:30)",
        ),
        (
            f"{PAGE}/stations/CITY2",
            station_form(csrf, level="galactic"),
            422,
            "is not a level",
        ),
    ]
    for path, form, status, reason in refusals:
        answered, _, text = await post(staff, path, form)
        assert answered == status, (path, form, text[-600:])
        assert 'id="station-error"' in text and reason in text, (reason, text[-2000:])
    edit_again = await post(staff, f"{PAGE}/stations/CITY2", refusals[-1][1])
    assert 'value="市广播电视台新闻频道"' in edit_again[2]  # what was typed is kept
    staff.client.session.cookie_jar.update_cookies({"lang": "zh"})
    _, _, zh = await post(staff, f"{PAGE}/stations", refusals[0][1])
    assert "第 1 个录制时段：结束时间（19:00）早于开始时间（20:00）" in zh
    staff.client.session.cookie_jar.update_cookies({"lang": "en"})
    # Without the session's CSRF token, or without the role: refused before anything runs.
    assert (await post(staff, f"{PAGE}/stations", station_form(None, code="NEW")))[0] == 403
    forged = station_form("x" * 40, code="NEW")
    assert (await post(staff, f"{PAGE}/stations/CITY2/remove", forged[:1]))[0] == 403
    assert await snapshot(staff) == before
    viewer_csrf = await login(staff, "reader", Role.STAFF)
    assert (await post(staff, f"{PAGE}/stations", station_form(viewer_csrf, code="NEW")))[0] == 403
    assert 'id="station-add"' not in await (await staff.client.get(PAGE)).text()
    assert await snapshot(staff) == before
    csrf = await login(staff, "chief2", Role.OPERATOR)
    staff.client.session.cookie_jar.update_cookies({"lang": "en"})

    # Edit: new level, kind and retention (items follow), one window kept, one added.
    async with staff.ctx.db.session() as session:
        item = Item(
            key=uuid.uuid4().hex,
            station_id=station.id,
            title="新闻",
            level=Level.CITY,
            kind=Kind.RADIO,
            broadcast_at=dt.datetime(2026, 11, 20, 11, tzinfo=dt.UTC),
            expires_at=dt.datetime(2026, 11, 30, 11, tzinfo=dt.UTC),
            duration_seconds=60.0,
        )
        session.add(item)
    edit_page = await (await staff.client.get(f"{PAGE}/stations/CITY2")).text()
    assert 'value="19:00"' in edit_page and 'value="19:30"' in edit_page
    status, location, _ = await post(
        staff,
        f"{PAGE}/stations/CITY2",
        station_form(
            csrf,
            name="省台新闻",
            level="provincial",
            kind="tv",
            retention_days="",
            windows=[("19:00", "19:30", "1234567", "新闻联播"), ("06:00", "06:45", "67", "早新闻")],
        ),
    )
    assert status == 303, location
    async with staff.ctx.db.session() as session:
        station = await session.scalar(select(Station).where(Station.code == "CITY2"))
        assert station is not None and station.name == "省台新闻"
        assert (station.level, station.kind, station.retention_days) == (
            Level.PROVINCIAL,
            Kind.TV,
            None,
        )
        windows = (await session.scalars(select(Schedule).order_by(Schedule.start_time))).all()
        assert [(w.start_time, w.duration_seconds, w.weekdays) for w in windows] == [
            ("06:00", 2700, "67"),
            ("19:00", 1800, "1234567"),
        ]
        assert windows[1].id == window.id  # unchanged windows keep their planned recordings
        kept = await session.scalar(select(Item).where(Item.id == item.id))
        assert kept is not None and kept.level == Level.PROVINCIAL and kept.kind == Kind.TV
        assert kept.expires_at.replace(tzinfo=dt.UTC) == dt.datetime(
            2026, 12, 20, 11, tzinfo=dt.UTC
        )  # the server's 30 days now

    # Removing a window takes its planned recordings with it.
    status, _, _ = await post(
        staff, f"{PAGE}/stations/CITY2", station_form(csrf, windows=[("06:00", "06:45", "67", "")])
    )
    assert status == 303
    async with staff.ctx.db.session() as session:
        assert [w.start_time for w in (await session.scalars(select(Schedule))).all()] == ["06:00"]
        planned_now = (
            await session.scalars(
                select(Capture.starts_at).where(Capture.state == CaptureState.SCHEDULED)
            )
        ).all()
        shanghai = dt.timezone(dt.timedelta(hours=8))
        hours = {at.replace(tzinfo=dt.UTC).astimezone(shanghai).hour for at in planned_now}
        assert hours <= {6}, hours  # no 19:00 recording is left planned

    # Delete: refused while the catalogue has its programmes, then done.
    status, _, text = await post(staff, f"{PAGE}/stations/CITY2/remove", [("csrf_token", csrf)])
    assert status == 409 and "still has 1 programme(s)" in text
    async with staff.ctx.db.session() as session:
        await session.delete(await session.get(Item, item.id))
    status, location, _ = await post(staff, f"{PAGE}/stations/CITY2/remove", [("csrf_token", csrf)])
    assert status == 303 and location == f"{PAGE}?station_deleted=CITY2#stations"
    assert await snapshot(staff) == [[], []]
    assert "Station CITY2 deleted." in await (await staff.client.get(location)).text()
    assert (await staff.client.get(f"{PAGE}/stations/CITY2")).status == 404
    assert (await post(staff, f"{PAGE}/stations/CITY2/remove", [("csrf_token", csrf)]))[0] == 404
