"""Capture windows of daily schedules, sans-I/O (no clock: ``now`` is given)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    starts_at: dt.datetime
    ends_at: dt.datetime


def parse_time_of_day(text: str) -> dt.time:
    match = TIME_OF_DAY.match(text)
    if match is None:
        raise ValueError("start time must be HH:MM (24-hour)")
    return dt.time(int(match.group(1)), int(match.group(2)))


def windows_between(
    start_time: str,
    duration_seconds: int,
    weekdays: str,
    zone: ZoneInfo,
    since: dt.datetime,
    until: dt.datetime,
) -> list[Window]:
    """Windows (in UTC) of a daily schedule that have not ended by ``since`` and start
    before ``until``. Times are wall-clock in ``zone``, so 19:00 stays 19:00 across DST."""
    at = parse_time_of_day(start_time)
    length = dt.timedelta(seconds=duration_seconds)
    day = since.astimezone(zone).date() - dt.timedelta(days=1)
    last = until.astimezone(zone).date()
    found: list[Window] = []
    while day <= last:
        if str(day.isoweekday()) in weekdays:
            local = dt.datetime.combine(day, at, tzinfo=zone)
            starts = local.astimezone(dt.UTC)
            if starts + length > since and starts < until:
                found.append(Window(starts, starts + length))
        day += dt.timedelta(days=1)
    return found
