"""The dialog event package's body (RFC 4235), sans-I/O: an extension's calls as XML.

Busy lamp fields on desk phones subscribe to ``Event: dialog`` for a colleague's
extension; each NOTIFY carries the full state (``state="full"``) with an increasing
``version``: no <dialog> element means idle, ``early`` ringing, ``confirmed`` talking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

EVENT = "dialog"
CONTENT_TYPE = "application/dialog-info+xml"
STATES = frozenset({"trying", "proceeding", "early", "confirmed", "terminated"})


@dataclass(frozen=True, slots=True)
class DialogState:
    id: str  # an opaque identifier (not the Call-ID: that stays private)
    state: str
    direction: str  # "initiator" (the extension called) or "recipient" (it was called)


def dialog_info(entity: str, version: int, dialogs: Iterable[DialogState]) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
        f'version="{int(version)}" state="full" entity={quoteattr(entity)}>',
    ]
    for dialog in dialogs:
        if dialog.state not in STATES or dialog.direction not in ("initiator", "recipient"):
            raise ValueError(f"bad dialog state {dialog}")
        lines.append(
            f"  <dialog id={quoteattr(dialog.id)} direction={quoteattr(dialog.direction)}>"
            f"<state>{dialog.state}</state></dialog>"
        )
    lines.append("</dialog-info>")
    return ("\r\n".join(lines) + "\r\n").encode()
