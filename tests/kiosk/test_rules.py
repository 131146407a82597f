"""The sans-I/O rules with an injected clock: windows, schedules, targeting, feed, fleet."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from kiosk.rules import (
    ALL_WEEKDAYS,
    HORIZON,
    AlertSpec,
    ContentKind,
    Daypart,
    FleetState,
    ItemSpec,
    Placement,
    PlaylistSpec,
    RuleError,
    ScheduleRule,
    Target,
    Window,
    build_feed,
    districts_of_area,
    etag_matches,
    fleet_state,
    merge,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")  # has daylight saving: the awkward days


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, zone: ZoneInfo = SHANGHAI
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone)


# 2026-11-23 is a Monday.
MONDAY = dt.date(2026, 11, 23)


def test_window_bounds_and_refusals() -> None:
    window = Window(local(2026, 11, 23, 8), local(2026, 11, 23, 9))
    assert window.contains(local(2026, 11, 23, 8))
    assert not window.contains(local(2026, 11, 23, 9))
    assert not window.contains(local(2026, 11, 23, 7, 59))
    assert Window().contains(local(1999, 1, 1))
    assert Window(starts=local(2026, 1, 1)).contains(local(2030, 1, 1))
    with pytest.raises(RuleError, match="ends before it starts"):
        Window(local(2026, 11, 23, 9), local(2026, 11, 23, 8))
    with pytest.raises(RuleError, match="ends before it starts"):
        Window(local(2026, 11, 23, 9), local(2026, 11, 23, 9))
    with pytest.raises(RuleError, match="time zone"):
        Window(dt.datetime(2026, 1, 1), None)


@pytest.mark.parametrize(
    "text", ["7-9", "07:00", "25:00-26:00", "07:00-07:00", "ab:cd-ef:gh", "7:0-8:00"]
)
def test_bad_dayparts_are_refused(text: str) -> None:
    with pytest.raises(RuleError):
        Daypart.parse(text)


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(RuleError, match="weekday"):
        ScheduleRule(weekdays=frozenset())
    with pytest.raises(RuleError, match="1 \\(Monday\\)"):
        ScheduleRule(weekdays=frozenset({0, 1}))
    with pytest.raises(RuleError, match="date range"):
        ScheduleRule(date_from=dt.date(2026, 2, 1), date_until=dt.date(2026, 1, 1))
    with pytest.raises(RuleError, match="YYYY-MM-DD"):
        ScheduleRule.from_json({"date_from": "next week"})


def test_schedule_round_trips_through_json() -> None:
    rule = ScheduleRule(
        frozenset({1, 3}),
        (Daypart.parse("07:00-09:30"), Daypart.parse("22:00-24:00")),
        dt.date(2026, 11, 1),
        dt.date(2026, 12, 31),
    )
    assert ScheduleRule.from_json(rule.to_json()) == rule
    assert rule.to_json()["dayparts"] == ["07:00-09:30", "22:00-24:00"]


def test_every_minute_of_a_week_against_a_plain_reading() -> None:
    """Weekday dayparts checked minute by minute against a direct reading of the rule."""
    rule = ScheduleRule(
        frozenset({1, 2, 3, 4, 5}),
        (Daypart.parse("07:00-09:30"), Daypart.parse("17:00-19:00")),
    )
    start = local(2026, 11, 23)
    spans = rule.intervals(start, start + dt.timedelta(days=7), SHANGHAI)
    for minute in range(0, 7 * 24 * 60, 7):
        moment = start + dt.timedelta(minutes=minute)
        clock = moment.hour * 60 + moment.minute
        expected = moment.isoweekday() <= 5 and (
            7 * 60 <= clock < 9 * 60 + 30 or 17 * 60 <= clock < 19 * 60
        )
        inside = any(low <= moment < high for low, high in spans)
        assert inside == expected == rule.active_at(moment, SHANGHAI), moment


def test_daypart_across_midnight_belongs_to_the_day_it_starts() -> None:
    friday_nights = ScheduleRule(frozenset({5}), (Daypart.parse("22:00-02:00"),))
    assert friday_nights.active_at(local(2026, 11, 27, 23), SHANGHAI)  # Friday
    assert friday_nights.active_at(local(2026, 11, 28, 1, 59), SHANGHAI)  # Saturday morning
    assert not friday_nights.active_at(local(2026, 11, 28, 2), SHANGHAI)
    assert not friday_nights.active_at(local(2026, 11, 28, 23), SHANGHAI)  # Saturday night
    assert not friday_nights.active_at(local(2026, 11, 27, 1), SHANGHAI)  # Thursday's night
    ending = ScheduleRule(
        frozenset({5}), (Daypart.parse("22:00-02:00"),), date_until=dt.date(2026, 11, 27)
    )
    assert ending.active_at(local(2026, 11, 28, 1), SHANGHAI)


def test_date_range_is_inclusive_in_local_time() -> None:
    rule = ScheduleRule(date_from=dt.date(2026, 12, 1), date_until=dt.date(2026, 12, 3))
    assert not rule.active_at(local(2026, 11, 30, 23, 59), SHANGHAI)
    assert rule.active_at(local(2026, 12, 1, 0, 0), SHANGHAI)
    assert rule.active_at(local(2026, 12, 3, 23, 59), SHANGHAI)
    assert not rule.active_at(local(2026, 12, 4), SHANGHAI)
    # 2026-12-01 00:30 in Shanghai is still 30 November in UTC: local dates decide.
    assert rule.active_at(dt.datetime(2026, 11, 30, 16, 30, tzinfo=dt.UTC), SHANGHAI)


@pytest.mark.parametrize(
    "weekdays",
    [frozenset(c) for n in (1, 3, 7) for c in itertools.combinations(range(1, 8), n)][:40],
)
def test_weekday_sets(weekdays: frozenset[int]) -> None:
    rule = ScheduleRule(weekdays)
    for offset in range(14):
        day = MONDAY + dt.timedelta(days=offset)
        noon = local(day.year, day.month, day.day, 12)
        assert rule.active_at(noon, SHANGHAI) == (day.isoweekday() in weekdays)


def test_daylight_saving_days_keep_local_dayparts() -> None:
    rule = ScheduleRule(ALL_WEEKDAYS, (Daypart.parse("08:00-10:00"),))
    # Berlin moves to summer time on 2026-03-29: the slot is still 08:00-10:00 local.
    for day in (28, 29, 30):
        spans = rule.intervals(
            local(2026, 3, day, zone=BERLIN), local(2026, 3, day, 23, zone=BERLIN), BERLIN
        )
        assert [(a.astimezone(BERLIN).hour, b.astimezone(BERLIN).hour) for a, b in spans] == [
            (8, 10)
        ]
    # A slot spanning the skipped hour is one hour shorter in real time.
    night = ScheduleRule(ALL_WEEKDAYS, (Daypart.parse("01:00-04:00"),))
    spans = night.intervals(
        local(2026, 3, 29, zone=BERLIN), local(2026, 3, 29, 12, zone=BERLIN), BERLIN
    )
    assert sum(((b - a) for a, b in spans), dt.timedelta()) == dt.timedelta(hours=2)


def test_merge_joins_touching_and_overlapping() -> None:
    t = [local(2026, 1, 1, h) for h in range(8)]
    assert merge([(t[3], t[5]), (t[0], t[1]), (t[1], t[2]), (t[4], t[6])]) == [
        (t[0], t[2]),
        (t[3], t[6]),
    ]


@pytest.mark.parametrize(
    ("target", "place", "reached"),
    [
        (Target(), Placement(), True),
        (Target(), Placement("G1", "东城", "长安街"), True),
        (Target(groups=frozenset({"G1"})), Placement("G1"), True),
        (Target(groups=frozenset({"G1"})), Placement("G2"), False),
        (Target(groups=frozenset({"G1"})), Placement(None), False),
        (Target(districts=frozenset({"东城"})), Placement("G2", "东城"), True),
        (Target(districts=frozenset({"东城"})), Placement("G2", "西城"), False),
        (Target(districts=frozenset({""})), Placement("G2", ""), False),
        (Target(streets=frozenset({"长安街"})), Placement("G3", "西城", "长安街"), True),
        (
            Target(groups=frozenset({"G9"}), streets=frozenset({"长安街"})),
            Placement("G3", "", "王府井"),
            False,
        ),
    ],
)
def test_targeting(target: Target, place: Placement, reached: bool) -> None:
    assert target.reaches(place) is reached


ALWAYS = Window()


def _item(item_id: int, window: Window = ALWAYS, category: str = "notices") -> ItemSpec:
    return ItemSpec(
        item_id,
        ContentKind.NOTICE,
        category,
        window,
        {"title": {"zh": f"通知{item_id}", "en": f"Notice {item_id}"}},
    )


def test_feed_orders_filters_and_plans_intervals() -> None:
    now = local(2026, 11, 23, 10, 17)  # Monday
    items = [
        _item(1),
        _item(2, Window(ends=local(2026, 11, 23, 12))),
        _item(3, Window(starts=local(2026, 12, 25))),  # beyond the horizon: left out
        _item(4, category="guides"),
        _item(5),  # in no playlist
        _item(6),
    ]
    playlists = [
        PlaylistSpec(1, "everyday", (1, 2, 3), priority=0),
        PlaylistSpec(
            2,
            "mornings G1",
            (4, 1),
            (ScheduleRule(ALL_WEEKDAYS, (Daypart.parse("08:00-11:00"),)),),
            Target(groups=frozenset({"G1"})),
            priority=5,
        ),
        PlaylistSpec(3, "other group", (6,), (), Target(groups=frozenset({"G2"}))),
    ]
    feed = build_feed(Placement("G1"), items, playlists, [], now, SHANGHAI)
    ids = [entry["id"] for entry in feed.body["items"]]
    assert ids == [4, 1, 2]
    by_id = {entry["id"]: entry for entry in feed.body["items"]}
    assert by_id[2]["show"] == [["2026-11-23T02:00:00Z", "2026-11-23T04:00:00Z"]]
    assert by_id[4]["show"][0] == ["2026-11-23T02:00:00Z", "2026-11-23T03:00:00Z"]
    assert len(by_id[4]["show"]) == 3  # today, tomorrow, the day after (48 h horizon)
    assert by_id[1]["show"] == [["2026-11-23T02:00:00Z", "2026-11-25T02:00:00Z"]]
    assert feed.body["categories"] == ["guides", "notices"]
    assert feed.body["planned_until"] == "2026-11-25T02:00:00Z"
    other = build_feed(Placement("G2"), items, playlists, [], now, SHANGHAI)
    assert [entry["id"] for entry in other.body["items"]] == [1, 2, 6]
    nowhere = build_feed(Placement(None), items, playlists[1:], [], now, SHANGHAI)
    assert nowhere.body["items"] == []


def test_feed_etag_is_stable_within_the_hour_and_changes_with_content() -> None:
    items, playlists = [_item(1)], [PlaylistSpec(1, "p", (1,))]
    first = build_feed(Placement("G1"), items, playlists, [], local(2026, 11, 23, 10, 1), SHANGHAI)
    same = build_feed(Placement("G1"), items, playlists, [], local(2026, 11, 23, 10, 59), SHANGHAI)
    later = build_feed(Placement("G1"), items, playlists, [], local(2026, 11, 23, 11, 0), SHANGHAI)
    changed = build_feed(
        Placement("G1"),
        [_item(1, category="x")],
        playlists,
        [],
        local(2026, 11, 23, 10, 1),
        SHANGHAI,
    )
    assert first.etag == same.etag != later.etag
    assert changed.etag != first.etag
    # A cache may keep it until the next hour, when the plan moves on.
    assert first.valid_until == same.valid_until == later.valid_until - dt.timedelta(hours=1)
    assert first.valid_until == local(2026, 11, 23, 11, 0)
    assert first.body["version"] == first.etag.strip('"')
    assert etag_matches(first.etag, first.etag)
    assert etag_matches(f'"zzz", W/{first.etag}', first.etag)
    assert etag_matches("*", first.etag)
    assert not etag_matches(None, first.etag) and not etag_matches('"other"', first.etag)


def test_feed_alerts_follow_target_expiry_and_cancel() -> None:
    now = local(2026, 11, 23, 10)
    alerts = [
        AlertSpec(1, "暴雨红色预警", "", "Extreme", Target(), now - dt.timedelta(minutes=5)),
        AlertSpec(2, "G2 only", "", "Severe", Target(groups=frozenset({"G2"})), now),
        AlertSpec(
            3,
            "expired",
            "",
            "Minor",
            Target(),
            now - dt.timedelta(hours=2),
            now - dt.timedelta(hours=1),
        ),
        AlertSpec(4, "cancelled", "", "Minor", Target(), now, cancelled=True),
        AlertSpec(5, "expires soon", "", "Minor", Target(), now, now + dt.timedelta(minutes=1)),
    ]
    feed = build_feed(Placement("G1"), [], [], alerts, now, SHANGHAI)
    assert [alert["id"] for alert in feed.body["alerts"]] == [1, 5]
    assert feed.body["alerts"][1]["expires"] == "2026-11-23T02:01:00Z"
    assert not alerts[4].active_at(now + dt.timedelta(minutes=1))
    # The feed changes when the soonest alert expires: a cache keeps it until then.
    assert feed.valid_until == now + dt.timedelta(minutes=1)


def test_horizon_is_two_days() -> None:
    assert HORIZON == dt.timedelta(hours=48)


@pytest.mark.parametrize(
    ("seen_ago", "rendered_ago", "state"),
    [
        (None, None, FleetState.NEVER),
        (10, 1, FleetState.ONLINE),
        (64, 1, FleetState.ONLINE),
        (66, 1, FleetState.OFFLINE),
        (10, None, FleetState.STALE),
        (10, 121, FleetState.STALE),
        (10, 119, FleetState.ONLINE),
        (3600, 3600, FleetState.OFFLINE),
    ],
)
def test_fleet_state(seen_ago: int | None, rendered_ago: int | None, state: FleetState) -> None:
    now = local(2026, 11, 23, 10)
    ago = lambda s: None if s is None else now - dt.timedelta(seconds=s)  # noqa: E731
    assert (
        fleet_state(
            now,
            ago(seen_ago),
            ago(rendered_ago),
            dt.timedelta(seconds=30),
            dt.timedelta(seconds=120),
        )
        is state
    )


def test_cap_area_names_districts() -> None:
    known = ["东城", "西城", "Chaoyang", ""]
    assert districts_of_area("", known) == frozenset()  # no area: every kiosk
    assert districts_of_area("  ", known) == frozenset()
    assert districts_of_area("北京市东城区、西城区", known) == {"东城", "西城"}
    assert districts_of_area("CHAOYANG district", known) == {"Chaoyang"}
    # A group's district may carry the 区 ending the area leaves out, and the other way.
    assert districts_of_area("东城、西城", ["东城区", "西城区", "海淀区"]) == {"东城区", "西城区"}
    assert districts_of_area("Chaoyang", ["Chaoyang District"]) == {"Chaoyang District"}
    assert districts_of_area("东城区", ["城区"]) == {"城区"}  # the whole name still matches
    # Names no kiosk district ("全市", the city's name, a place with no kiosk): every kiosk,
    # because a takeover that reaches no screen is the worse failure in an emergency.
    for area in ("全市", "北京市", "City-wide", "海淀区; 丰台区"):
        assert districts_of_area(area, known) == frozenset(), area
        target = Target(districts=districts_of_area(area, known))
        assert target.everywhere and target.reaches(Placement("G1", "东城"))
        assert target.reaches(Placement("G9", ""))  # a group with no district too
    # Naming districts reaches those only.
    named = Target(districts=districts_of_area("东城区暴雨", known))
    assert named.reaches(Placement("G1", "东城")) and not named.reaches(Placement("G2", "西城"))
