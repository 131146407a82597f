"""Events sms publishes on the bus (kiosks and the command room subscribe)."""

from __future__ import annotations

from typing import ClassVar

from core.bus import Event


class AlertPublished(Event):
    topic: ClassVar[str] = "sms.alert_published"

    identifier: str
    sender: str
    headline: str
    description: str = ""
    instruction: str = ""
    severity: str = "Unknown"
    urgency: str = "Unknown"
    area: str = ""
    language: str = "zh-CN"
    broadcast_id: int | None = None
    cap_xml: str = ""
