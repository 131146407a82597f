"""Protocol errors raised by the sans-I/O SIP core."""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error the SIP core raises on its own account."""


class SipParseError(SipError, ValueError):
    """Input that is not a well-formed SIP message (or part of one).

    ``status`` is the response a server should answer with when the input was a
    request it could identify well enough to answer at all.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SipStateError(SipError):
    """An operation that the current protocol state does not allow."""


class SdpParseError(SipParseError):
    """A message body that is not a well-formed session description (RFC 4566)."""

    def __init__(self, message: str, status: int = 488) -> None:
        super().__init__(message, status)
