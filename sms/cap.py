"""CAP 1.2 (OASIS Common Alerting Protocol) import and export (sans-I/O).

Only what an SMS alert needs is modelled: the alert envelope and its ``info`` blocks
with an area description. Documents with a DTD or entity declarations are refused
before parsing (billion-laughs and external-entity attacks need one), as defusedxml
would do.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NS = "urn:oasis:names:tc:emergency:cap:1.2"
MAX_DOCUMENT = 256 * 1024

STATUS = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPE = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPE = ("Public", "Restricted", "Private")
CATEGORY = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
URGENCY = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITY = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTY = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
# CAP's dateTime: no fractional seconds, an explicit offset ("Z" is not allowed).
_CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
_FORBIDDEN_CHARS = re.compile(r"[\s,&<]")


class CapError(ValueError):
    """A document that is not valid CAP 1.2; the message names the element."""


@dataclass
class CapInfo:
    event: str
    urgency: str
    severity: str
    certainty: str
    category: str = "Safety"
    language: str = "zh-CN"
    headline: str = ""
    description: str = ""
    instruction: str = ""
    area: str = ""


@dataclass
class CapAlert:
    identifier: str
    sender: str
    sent: dt.datetime
    status: str = "Actual"
    msg_type: str = "Alert"
    scope: str = "Public"
    info: list[CapInfo] = field(default_factory=list)

    def text(self, language: str = "zh") -> str:
        """The SMS text: headline and instruction of the info in ``language`` (or the first)."""
        if not self.info:
            return ""
        chosen = next(
            (i for i in self.info if i.language.lower().startswith(language)), self.info[0]
        )
        parts = [chosen.headline or chosen.event, chosen.description, chosen.instruction]
        return " ".join(part.strip() for part in parts if part.strip())


def format_time(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    text = value.replace(microsecond=0).isoformat()
    return text


def parse(document: bytes) -> CapAlert:
    if len(document) > MAX_DOCUMENT:
        raise CapError(f"document larger than {MAX_DOCUMENT} bytes")
    upper = document.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise CapError("DTDs and entity declarations are not accepted")
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise CapError(f"not well-formed XML: {exc}") from None
    if root.tag != f"{{{NS}}}alert":
        raise CapError(f"root element must be <alert> in namespace {NS}")

    def text(parent: ET.Element, name: str, required: bool = True) -> str:
        element = parent.find(f"{{{NS}}}{name}")
        value = (element.text or "").strip() if element is not None else ""
        if required and not value:
            raise CapError(f"<{name}> is required")
        return value

    def choice(parent: ET.Element, name: str, allowed: tuple[str, ...]) -> str:
        value = text(parent, name)
        if value not in allowed:
            raise CapError(f"<{name}> must be one of {', '.join(allowed)}, not {value!r}")
        return value

    identifier = text(root, "identifier")
    sender = text(root, "sender")
    for name, value in (("identifier", identifier), ("sender", sender)):
        if _FORBIDDEN_CHARS.search(value):
            raise CapError(f"<{name}> must not contain spaces, commas or restricted characters")
    sent_text = text(root, "sent")
    if not _CAP_TIME.match(sent_text):
        raise CapError("<sent> must be a CAP dateTime such as 2026-11-21T10:00:00+08:00")
    alert = CapAlert(
        identifier=identifier,
        sender=sender,
        sent=dt.datetime.fromisoformat(sent_text),
        status=choice(root, "status", STATUS),
        msg_type=choice(root, "msgType", MSG_TYPE),
        scope=choice(root, "scope", SCOPE),
    )
    for element in root.findall(f"{{{NS}}}info"):
        area = element.find(f"{{{NS}}}area")
        alert.info.append(
            CapInfo(
                language=text(element, "language", required=False) or "en-US",
                category=choice(element, "category", CATEGORY),
                event=text(element, "event"),
                urgency=choice(element, "urgency", URGENCY),
                severity=choice(element, "severity", SEVERITY),
                certainty=choice(element, "certainty", CERTAINTY),
                headline=text(element, "headline", required=False),
                description=text(element, "description", required=False),
                instruction=text(element, "instruction", required=False),
                area=text(area, "areaDesc") if area is not None else "",
            )
        )
    return alert


def build(alert: CapAlert) -> bytes:
    ET.register_namespace("", NS)

    def add(parent: ET.Element, name: str, value: str) -> None:
        if value:
            ET.SubElement(parent, f"{{{NS}}}{name}").text = value

    root = ET.Element(f"{{{NS}}}alert")
    add(root, "identifier", alert.identifier)
    add(root, "sender", alert.sender)
    add(root, "sent", format_time(alert.sent))
    add(root, "status", alert.status)
    add(root, "msgType", alert.msg_type)
    add(root, "scope", alert.scope)
    for info in alert.info:
        element = ET.SubElement(root, f"{{{NS}}}info")
        add(element, "language", info.language)
        add(element, "category", info.category)
        add(element, "event", info.event)
        add(element, "urgency", info.urgency)
        add(element, "severity", info.severity)
        add(element, "certainty", info.certainty)
        add(element, "headline", info.headline)
        add(element, "description", info.description)
        add(element, "instruction", info.instruction)
        if info.area:
            area = ET.SubElement(element, f"{{{NS}}}area")
            add(area, "areaDesc", info.area)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        root, encoding="utf-8", xml_declaration=False
    )
