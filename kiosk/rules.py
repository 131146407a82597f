"""Sans-I/O rules of the kiosks: validity windows, schedules, targeting, the feed, fleet state.

Nothing here reads a clock, a database or the network: callers pass ``now`` (an aware
datetime) and plain values, so every rule is tested exhaustively with an injected clock.

A kiosk may lose the server for hours, so the feed does not say "show this now": it
gives each item the UTC intervals in which it may be shown over the next hours
(``HORIZON``), and the kiosk app picks what is active at its own clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

# How far ahead the feed plans; a kiosk offline for longer shows nothing scheduled
# (its alerts and always-on items stay).
HORIZON = dt.timedelta(hours=48)


class RuleError(ValueError):
    """Input that cannot make a rule; the message says which part and why."""


class ContentKind(enum.StrEnum):
    NOTICE = "notice"
    GUIDE = "guide"
    IMAGE = "image"
    VIDEO = "video"
    NEWS = "news"
    PORTAL = "portal"


@dataclass(frozen=True)
class Window:
    """A validity window: from ``starts`` (inclusive) to ``ends`` (exclusive); None is open."""

    starts: dt.datetime | None = None
    ends: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("starts", "ends"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise RuleError(f"{name} must carry a time zone")
        if self.starts is not None and self.ends is not None and self.ends <= self.starts:
            raise RuleError("the validity window ends before it starts")

    def contains(self, moment: dt.datetime) -> bool:
        return (self.starts is None or self.starts <= moment) and (
            self.ends is None or moment < self.ends
        )

    def clip(self, start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        low = max(start, self.starts) if self.starts is not None else start
        high = min(end, self.ends) if self.ends is not None else end
        return (low, high) if low < high else None


@dataclass(frozen=True)
class Daypart:
    """A part of the day in local time; ``end`` not after ``start`` crosses midnight."""

    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise RuleError("a daypart must not start and end at the same time")

    @classmethod
    def parse(cls, text: str) -> Daypart:
        """``"07:00-09:30"``; ``"22:00-02:00"`` runs into the next day, ``-24:00`` to midnight."""
        try:
            start_text, end_text = text.split("-")
            start = _parse_time(start_text)
            end = dt.time(0) if end_text.strip() == "24:00" else _parse_time(end_text)
        except ValueError:
            raise RuleError(f"daypart {text!r} must look like 07:00-09:30") from None
        return cls(start, end)

    def __str__(self) -> str:
        end = "24:00" if self.end == dt.time(0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def _parse_time(text: str) -> dt.time:
    hours, minutes = text.strip().split(":")
    if len(minutes) != 2:
        raise ValueError(text)
    return dt.time(int(hours), int(minutes))


ALL_WEEKDAYS = frozenset(range(1, 8))


@dataclass(frozen=True)
class ScheduleRule:
    """When a playlist plays: weekdays (ISO, 1 = Monday), dayparts and a date range.

    A daypart that crosses midnight belongs to the day it starts on: "Friday
    22:00-02:00" plays into Saturday morning, and a date range ending on Friday
    still lets it finish.
    """

    weekdays: frozenset[int] = ALL_WEEKDAYS
    dayparts: tuple[Daypart, ...] = ()
    date_from: dt.date | None = None
    date_until: dt.date | None = None  # inclusive

    def __post_init__(self) -> None:
        if not self.weekdays:
            raise RuleError("a schedule needs at least one weekday")
        if not self.weekdays <= ALL_WEEKDAYS:
            raise RuleError("weekdays are 1 (Monday) to 7 (Sunday)")
        if self.date_from and self.date_until and self.date_until < self.date_from:
            raise RuleError("the date range ends before it starts")

    def _plays_on(self, day: dt.date) -> bool:
        return (
            day.isoweekday() in self.weekdays
            and (self.date_from is None or self.date_from <= day)
            and (self.date_until is None or day <= self.date_until)
        )

    def local_spans(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """Naive local spans that start on ``day`` (a span may end on the next day)."""
        if not self._plays_on(day):
            return []
        midnight = dt.datetime.combine(day, dt.time(0))
        if not self.dayparts:
            return [(midnight, midnight + dt.timedelta(days=1))]
        spans = []
        for part in self.dayparts:
            start = dt.datetime.combine(day, part.start)
            end_day = day + dt.timedelta(days=1) if part.end <= part.start else day
            spans.append((start, dt.datetime.combine(end_day, part.end)))
        return spans

    def intervals(
        self, start: dt.datetime, end: dt.datetime, zone: ZoneInfo
    ) -> list[tuple[dt.datetime, dt.datetime]]:
        """The UTC intervals within [start, end) in which this rule plays."""
        first = start.astimezone(zone).date() - dt.timedelta(days=1)
        last = end.astimezone(zone).date()
        found: list[tuple[dt.datetime, dt.datetime]] = []
        day = first
        while day <= last:
            for local_start, local_end in self.local_spans(day):
                low = max(_to_utc(local_start, zone), start)
                high = min(_to_utc(local_end, zone), end)
                if low < high:
                    found.append((low, high))
            day += dt.timedelta(days=1)
        return merge(found)

    def active_at(self, moment: dt.datetime, zone: ZoneInfo) -> bool:
        return bool(self.intervals(moment, moment + dt.timedelta(microseconds=1), zone))

    def to_json(self) -> dict[str, Any]:
        return {
            "weekdays": sorted(self.weekdays),
            "dayparts": [str(part) for part in self.dayparts],
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_until": self.date_until.isoformat() if self.date_until else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScheduleRule:
        try:
            weekdays = frozenset(int(day) for day in data.get("weekdays") or ALL_WEEKDAYS)
            date_from = _date(data.get("date_from"))
            date_until = _date(data.get("date_until"))
        except (TypeError, ValueError):
            raise RuleError("weekdays must be numbers and dates YYYY-MM-DD") from None
        dayparts = tuple(Daypart.parse(str(text)) for text in data.get("dayparts") or ())
        return cls(weekdays, dayparts, date_from, date_until)


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(str(value)) if value else None


def _to_utc(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    # fold=0: in a repeated hour the earlier instant counts; a skipped hour moves on.
    return local.replace(tzinfo=zone).astimezone(dt.UTC)


def merge(
    intervals: Iterable[tuple[dt.datetime, dt.datetime]],
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Sorted, with overlapping or touching intervals joined."""
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


@dataclass(frozen=True)
class Placement:
    """Where a kiosk stands: its group and the group's district and street."""

    group: str | None = None
    district: str = ""
    street: str = ""


@dataclass(frozen=True)
class Target:
    """Which kiosks a playlist or an alert reaches; all empty means every kiosk."""

    groups: frozenset[str] = frozenset()
    districts: frozenset[str] = frozenset()
    streets: frozenset[str] = frozenset()

    @property
    def everywhere(self) -> bool:
        return not (self.groups or self.districts or self.streets)

    def reaches(self, place: Placement) -> bool:
        if self.everywhere:
            return True
        return (
            (place.group is not None and place.group in self.groups)
            or (bool(place.district) and place.district in self.districts)
            or (bool(place.street) and place.street in self.streets)
        )


# What a district's name may end with that an area text may leave out ("东城区" / "东城").
DISTRICT_SUFFIXES = ("区", "县", "市", " district", " county")


def _district_forms(district: str) -> set[str]:
    name = district.strip().casefold()
    forms = {name}
    for suffix in DISTRICT_SUFFIXES:
        short = name.removesuffix(suffix).strip()
        if short != name and len(short) >= 2:
            forms.add(short)
    return forms


def districts_of_area(area: str, districts: Iterable[str]) -> frozenset[str]:
    """The kiosk districts a CAP ``areaDesc`` names; empty means every kiosk.

    ``areaDesc`` is free text ("东城区、西城区", "Dongcheng; Xicheng"), so a district
    matches when its name, with or without its 区/县/市 ending, appears in it,
    ignoring case. An alert with no area, or whose area names no kiosk district
    ("全市", "北京市", a place no kiosk stands in), reaches every kiosk: the alerts
    come from the city's own emergency management, and a takeover that silently
    reaches no screen is the worse failure; the caller logs such an area.
    """
    text = area.strip().casefold()
    if not text:
        return frozenset()
    return frozenset(
        d for d in districts if d.strip() and any(form in text for form in _district_forms(d))
    )


@dataclass(frozen=True)
class ItemSpec:
    """A content item as the feed needs it; ``content`` is what the kiosk renders."""

    id: int
    kind: ContentKind
    category: str
    window: Window
    content: Mapping[str, Any]


@dataclass(frozen=True)
class PlaylistSpec:
    id: int
    name: str
    item_ids: tuple[int, ...]
    rules: tuple[ScheduleRule, ...] = ()  # none: always
    target: Target = field(default_factory=Target)
    priority: int = 0


@dataclass(frozen=True)
class AlertSpec:
    id: int
    headline: str
    text: str
    severity: str
    target: Target
    starts: dt.datetime
    expires: dt.datetime | None = None
    cancelled: bool = False

    def active_at(self, moment: dt.datetime) -> bool:
        return (
            not self.cancelled
            and self.starts <= moment
            and (self.expires is None or moment < self.expires)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "headline": self.headline,
            "text": self.text,
            "severity": self.severity,
            "starts": _iso(self.starts),
            "expires": _iso(self.expires) if self.expires else None,
        }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def plan_start(now: dt.datetime) -> dt.datetime:
    """The feed is planned from the start of the hour, so it (and its ETag) changes hourly."""
    return now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def item_intervals(
    item: ItemSpec,
    playlists: Sequence[PlaylistSpec],
    place: Placement,
    start: dt.datetime,
    end: dt.datetime,
    zone: ZoneInfo,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """When ``item`` may show at ``place`` within [start, end): its playlists' schedules
    that reach the place, cut to the item's validity window."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for playlist in playlists:
        if item.id not in playlist.item_ids or not playlist.target.reaches(place):
            continue
        if not playlist.rules:
            spans.append((start, end))
        for rule in playlist.rules:
            spans.extend(rule.intervals(start, end, zone))
    clipped = (item.window.clip(low, high) for low, high in merge(spans))
    return [span for span in clipped if span is not None]


@dataclass(frozen=True)
class Feed:
    body: dict[str, Any]
    etag: str
    # Until when the same inputs give the same feed: the next hour (it is planned from the
    # hour) or the moment an alert in it expires, whichever comes first.
    valid_until: dt.datetime


def build_feed(
    place: Placement,
    items: Sequence[ItemSpec],
    playlists: Sequence[PlaylistSpec],
    alerts: Sequence[AlertSpec],
    now: dt.datetime,
    zone: ZoneInfo,
) -> Feed:
    """What one kiosk (or the portal, for a place) shows over the next ``HORIZON``.

    Items come in playlist order (higher priority first), each once, with the UTC
    intervals in which they may show. The ETag hashes the body, so an unchanged feed
    is answered 304.
    """
    start = plan_start(now)
    end = start + HORIZON
    by_id = {item.id: item for item in items}
    ordered: list[int] = []
    for playlist in sorted(playlists, key=lambda p: (-p.priority, p.id)):
        if playlist.target.reaches(place):
            ordered.extend(i for i in playlist.item_ids if i in by_id and i not in ordered)
    entries = []
    for item_id in ordered:
        item = by_id[item_id]
        spans = item_intervals(item, playlists, place, start, end, zone)
        if not spans:
            continue
        entries.append(
            {
                "id": item.id,
                "kind": item.kind.value,
                "category": item.category,
                "show": [[_iso(low), _iso(high)] for low, high in spans],
                **item.content,
            }
        )
    live_alerts = [
        alert.to_json()
        for alert in sorted(alerts, key=lambda a: a.id)
        if alert.target.reaches(place)
        and (alert.active_at(now) or (not alert.cancelled and alert.starts > now))
    ]
    body = {
        "planned_from": _iso(start),
        "planned_until": _iso(end),
        "categories": sorted({entry["category"] for entry in entries}),
        "items": entries,
        "alerts": live_alerts,
    }
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    etag = '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'
    body["version"] = etag.strip('"')
    expiries = [a.expires for a in alerts if a.expires is not None and a.expires > now]
    return Feed(body, etag, min([start + dt.timedelta(hours=1), *expiries]))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match header against our strong ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates


class FleetState(enum.StrEnum):
    NEVER = "never"  # paired, not heard from yet
    ONLINE = "online"
    STALE = "stale"  # heartbeats arrive, but the screen has not rendered lately
    OFFLINE = "offline"


def fleet_state(
    now: dt.datetime,
    last_seen: dt.datetime | None,
    last_rendered: dt.datetime | None,
    heartbeat: dt.timedelta,
    stale_after: dt.timedelta,
) -> FleetState:
    if last_seen is None:
        return FleetState.NEVER
    # Two missed heartbeats and a little slack before we call a kiosk gone.
    if now - last_seen > heartbeat * 2 + dt.timedelta(seconds=5):
        return FleetState.OFFLINE
    if last_rendered is None or now - last_rendered > stale_after:
        return FleetState.STALE
    return FleetState.ONLINE
