"""A station as an operator describes it in the console, checked before anything is written.

Sans-I/O: :func:`parse_station_form` takes the submitted fields (plain strings, the
capture windows as parallel lists) and returns a :class:`StationInput` or raises
:class:`StationError`, whose ``code`` and ``params`` name a message of ``MESSAGES`` so
the console says what is wrong in the reader's language; ``str()`` is the English one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vod.models import Kind, Level
from vod.windows import parse_time_of_day

CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Where a capture records from: what ffmpeg reads as a live input.
STREAM_URL = re.compile(r"^(https?|rtmps?|rtsp|rtp|udp|srt)://[^\s]{1,990}$", re.IGNORECASE)
MAX_WINDOW_SECONDS = 6 * 3600
MAX_RETENTION_DAYS = 3650
WINDOW_FIELDS = ("window_start", "window_end", "window_days", "window_programme")

MESSAGES = {
    "en": {
        "vod.stations": "Stations",
        "vod.station.add": "Add a station",
        "vod.station.edit": "Edit station {code}",
        "vod.station.code": "Code",
        "vod.station.name": "Name",
        "vod.station.level": "Level",
        "vod.station.kind": "Kind",
        "vod.station.stream_url": "Stream URL (to record from)",
        "vod.station.retention_days": "Retention (days; empty: {days}, the server default)",
        "vod.station.retention": "Kept",
        "vod.station.enabled": "Recording on",
        "vod.station.windows": "Daily capture windows",
        "vod.station.windows_help": "Local time ({zone}); weekdays as digits, 1 = Monday; "
        "clear a row's times to remove it.",
        "vod.station.window_start": "Starts",
        "vod.station.window_end": "Ends",
        "vod.station.window_days": "Weekdays",
        "vod.station.window_programme": "Programme",
        "vod.station.save": "Save",
        "vod.station.delete": "Delete",
        "vod.station.confirm_delete": "Delete station {code}?",
        "vod.station.back": "Back to news on demand",
        "vod.station.saved": "Station {code} saved.",
        "vod.station.deleted": "Station {code} deleted.",
        "vod.station.days": "{days} days",
        "vod.station.none": "none",
        "vod.error.code_invalid": "a code is 1-32 letters, digits, '-' or '_'",
        "vod.error.name_missing": "a station needs a name (at most 200 characters)",
        "vod.error.level_unknown": "{value!r} is not a level; choose central, provincial or city",
        "vod.error.kind_unknown": "{value!r} is not a kind; choose tv or radio",
        "vod.error.url_invalid": "a stream URL is http(s), rtmp(s), rtsp, rtp, udp or srt",
        "vod.error.retention_invalid": "retention is a whole number of days from 1 to 3650, "
        "or empty",
        "vod.error.window_time": "capture window {row}: times are HH:MM (24-hour)",
        "vod.error.window_order": "capture window {row}: it ends ({end}) before it starts "
        "({start})",
        "vod.error.window_too_long": "capture window {row}: at most 6 hours",
        "vod.error.window_days": "capture window {row}: weekdays are digits 1 (Monday) to "
        "7 (Sunday)",
        "vod.error.window_needs_url": "capture windows need a stream URL to record from",
        "vod.error.station_exists": "a station {code} already exists",
        "vod.error.station_unknown": "there is no station {code}",
        "vod.error.station_has_items": "station {code} still has {count} programme(s) in the "
        "catalogue: delete them first, or let them expire",
        "vod.error.station_busy": "station {code} has transcode jobs waiting or running",
    },
    "zh": {
        "vod.stations": "电台/电视台",
        "vod.station.add": "添加电台/电视台",
        "vod.station.edit": "编辑 {code}",
        "vod.station.code": "代码",
        "vod.station.name": "名称",
        "vod.station.level": "级别",
        "vod.station.kind": "类型",
        "vod.station.stream_url": "直播流地址（用于录制）",
        "vod.station.retention_days": "保留天数（留空：服务器默认 {days} 天）",
        "vod.station.retention": "保留",
        "vod.station.enabled": "启用录制",
        "vod.station.windows": "每日录制时段",
        "vod.station.windows_help": "本地时间（{zone}）；星期用数字表示，1 为星期一；"
        "清空某行的时间即删除该时段。",
        "vod.station.window_start": "开始",
        "vod.station.window_end": "结束",
        "vod.station.window_days": "星期",
        "vod.station.window_programme": "栏目",
        "vod.station.save": "保存",
        "vod.station.delete": "删除",
        "vod.station.confirm_delete": "删除 {code}？",
        "vod.station.back": "返回新闻点播",
        "vod.station.saved": "{code} 已保存。",
        "vod.station.deleted": "{code} 已删除。",
        "vod.station.days": "{days} 天",
        "vod.station.none": "无",
        "vod.error.code_invalid": "代码为 1-32 位字母、数字、“-”或“_”",
        "vod.error.name_missing": "请填写名称（最多 200 个字符）",
        "vod.error.level_unknown": "{value!r} 不是有效级别，请选择中央、省级或市级",
        "vod.error.kind_unknown": "{value!r} 不是有效类型，请选择电视或广播",
        "vod.error.url_invalid": "直播流地址须为 http(s)、rtmp(s)、rtsp、rtp、udp 或 srt 地址",
        "vod.error.retention_invalid": "保留天数须为 1 到 3650 的整数，或留空",
        "vod.error.window_time": "第 {row} 个录制时段：时间格式为 HH:MM（24 小时制）",
        "vod.error.window_order": "第 {row} 个录制时段：结束时间（{end}）早于开始时间（{start}）",
        "vod.error.window_too_long": "第 {row} 个录制时段：最长 6 小时",
        "vod.error.window_days": "第 {row} 个录制时段：星期须为数字 1（星期一）到 7（星期日）",
        "vod.error.window_needs_url": "设置录制时段须先填写直播流地址",
        "vod.error.station_exists": "{code} 已存在",
        "vod.error.station_unknown": "没有 {code}",
        "vod.error.station_has_items": "{code} 在节目目录中还有 {count} 个节目："
        "请先删除，或等其过期",
        "vod.error.station_busy": "{code} 还有等待或正在进行的转码任务",
    },
}


class StationError(ValueError):
    """A refusal naming its message (``vod.error.<code>``), the field at fault and a status."""

    def __init__(self, code: str, field: str = "", status: int = 422, /, **params: Any) -> None:
        self.code = code
        self.field = field
        self.status = status
        self.params = params
        super().__init__(MESSAGES["en"][f"vod.error.{code}"].format(**params))


@dataclass(frozen=True)
class WindowInput:
    start_time: str  # "HH:MM", local time
    duration_seconds: int
    weekdays: str  # ISO digits, sorted
    programme: str


@dataclass(frozen=True)
class StationInput:
    name: str
    level: Level
    kind: Kind
    stream_url: str = ""
    retention_days: int | None = None
    enabled: bool = True
    windows: tuple[WindowInput, ...] = ()


def check_code(code: str) -> str:
    code = code.strip()
    if not CODE.match(code):
        raise StationError("code_invalid", "code")
    return code


def _minutes(text: str, row: int) -> int:
    try:
        at = parse_time_of_day(text.strip())
    except ValueError:
        raise StationError("window_time", "windows", row=row) from None
    return at.hour * 60 + at.minute


def parse_windows(rows: Sequence[Sequence[str]]) -> tuple[WindowInput, ...]:
    """Rows of (start, end, weekdays, programme); a row with neither time is left out.

    A window ends after it starts on the same day: one that would cross midnight is
    refused rather than guessed (``23:30-00:30`` is two windows, or ``23:30-23:59``).
    """
    windows = []
    for row, (start, end, days, programme) in enumerate(rows, 1):
        if not start.strip() and not end.strip():
            continue
        begins, ends = _minutes(start, row), _minutes(end, row)
        if ends <= begins:
            raise StationError(
                "window_order", "windows", row=row, start=start.strip(), end=end.strip()
            )
        if (ends - begins) * 60 > MAX_WINDOW_SECONDS:
            raise StationError("window_too_long", "windows", row=row)
        weekdays = re.sub(r"[\s,，]", "", days) or "1234567"
        if any(day not in "1234567" for day in weekdays):
            raise StationError("window_days", "windows", row=row)
        windows.append(
            WindowInput(
                start_time=start.strip(),
                duration_seconds=(ends - begins) * 60,
                weekdays="".join(sorted(set(weekdays))),
                programme=programme.strip()[:200],
            )
        )
    return tuple(windows)


def parse_station_form(form: Mapping[str, Any], windows: Sequence[Sequence[str]]) -> StationInput:
    """The station fields of a submitted form (``windows`` as parallel rows)."""

    def text(name: str) -> str:
        return str(form.get(name, "") or "").strip()

    name = text("name")
    if not name or len(name) > 200:
        raise StationError("name_missing", "name")
    try:
        level = Level(text("level"))
    except ValueError:
        raise StationError("level_unknown", "level", value=text("level")[:40]) from None
    try:
        kind = Kind(text("kind"))
    except ValueError:
        raise StationError("kind_unknown", "kind", value=text("kind")[:40]) from None
    url = text("stream_url")
    if url and not STREAM_URL.match(url):
        raise StationError("url_invalid", "stream_url")
    retention: int | None = None
    if text("retention_days"):
        try:
            retention = int(text("retention_days"))
        except ValueError:
            raise StationError("retention_invalid", "retention_days") from None
        if not 1 <= retention <= MAX_RETENTION_DAYS:
            raise StationError("retention_invalid", "retention_days")
    parsed = parse_windows(windows)
    if parsed and not url:
        raise StationError("window_needs_url", "stream_url")
    return StationInput(
        name=name,
        level=level,
        kind=kind,
        stream_url=url,
        retention_days=retention,
        enabled=form.get("enabled") == "on",
        windows=parsed,
    )


__all__ = [
    "MESSAGES",
    "WINDOW_FIELDS",
    "StationError",
    "StationInput",
    "WindowInput",
    "check_code",
    "parse_station_form",
    "parse_windows",
]
