"""The message-summary event package (RFC 3842): the body of an MWI NOTIFY, sans-I/O.

    Messages-Waiting: yes
    Message-Account: sip:1002@unicomm
    Voice-Message: 2/8 (0/0)

``Voice-Message`` is new/old, then urgent new/old in brackets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SipParseError

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"


@dataclass(frozen=True)
class MessageSummary:
    new: int
    old: int
    account: str = ""  # the mailbox's URI; optional in the body
    urgent_new: int = 0
    urgent_old: int = 0

    @property
    def waiting(self) -> bool:
        return self.new > 0

    def body(self) -> bytes:
        lines = [f"Messages-Waiting: {'yes' if self.waiting else 'no'}"]
        if self.account:
            lines.append(f"Message-Account: {self.account}")
        lines.append(f"Voice-Message: {self.new}/{self.old} ({self.urgent_new}/{self.urgent_old})")
        return ("\r\n".join(lines) + "\r\n").encode()

    @classmethod
    def parse(cls, body: bytes | str) -> MessageSummary:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        fields: dict[str, str] = {}
        for line in text.splitlines():
            name, colon, value = line.partition(":")
            if colon:
                fields[name.strip().lower()] = value.strip()
        waiting = fields.get("messages-waiting", "").lower()
        if waiting not in ("yes", "no"):
            raise SipParseError("message-summary without Messages-Waiting: yes/no")
        new = old = urgent_new = urgent_old = 0
        if voice := fields.get("voice-message"):
            counts, _, urgent = voice.partition("(")
            try:
                new, old = (int(part) for part in counts.strip().split("/"))
                if urgent:
                    urgent_new, urgent_old = (int(part) for part in urgent.rstrip(") ").split("/"))
            except ValueError:
                raise SipParseError(f"bad Voice-Message {voice!r}") from None
        elif waiting == "yes":
            new = 1  # waiting, but how many is not said
        return cls(new, old, fields.get("message-account", ""), urgent_new, urgent_old)
