"""Anchoring media, sans-I/O: rewrite a session description to name our relay.

A call through the carrier trunk must not show a phone's private address, so
every SDP that crosses the exchange towards the carrier (and back) gets the
relay's address in ``o=`` and ``c=`` and the relay's port in the audio ``m=``
line; the address it named is returned so the relay knows where the far side
listens until its first packet arrives (then it latches on the source).

RTCP goes to the relay's RTP port + 1 (RFC 3550 §11: no ``a=rtcp`` needed); where
the sender wants its own RTCP (``a=rtcp``, RFC 3605, or its RTP port + 1) is
returned beside its RTP address. ``a=rtcp-mux`` passes through: when both ends
agree on it, RTCP rides on the RTP ports, which the relay forwards anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from voip.sip.errors import SdpParseError
from voip.sip.sdp import Connection, parse_sdp


@dataclass(frozen=True)
class Anchored:
    body: bytes
    peer: tuple[str, int] | None  # where the describing side receives audio, if it said
    rtcp_peer: tuple[str, int] | None = None  # and its RTCP (a=rtcp, or the RTP port + 1)


def anchor_sdp(body: bytes, host: str, port: int) -> Anchored:
    """``body`` with the relay's ``host``/``port`` in place of the sender's media address.

    Only the first audio stream is relayed; other streams are refused (port 0), so
    no address of the sender survives. A body that is not SDP raises SdpParseError.
    """
    description = parse_sdp(body)
    peer: tuple[str, int] | None = None
    rtcp_peer: tuple[str, int] | None = None
    relayed = False
    description.origin.address = host
    description.origin.username = "unicomm"
    session_connection = description.connection
    for media in description.media:
        connection = media.connections[0] if media.connections else session_connection
        if media.media == "audio" and not relayed and media.port != 0:
            if connection is not None and not connection.is_null:
                peer = (connection.address.split("/", 1)[0], media.port)
                rtcp_peer = _rtcp_address(media.get_attribute("rtcp"), peer)
            media.port = port
            relayed = True
        else:
            media.port = 0  # RFC 3264 §6: a refused stream
        held = connection is not None and connection.is_null
        media.connections = [Connection("0.0.0.0" if held else host)]
        # ICE candidates and RTCP addresses would name the sender: they go too.
        media.attributes = [a for a in media.attributes if a.name not in ("candidate", "rtcp")]
    if description.connection is not None:
        description.connection = Connection(host)
    return Anchored(bytes(description), peer, rtcp_peer)


def _rtcp_address(attribute: str | None, rtp: tuple[str, int]) -> tuple[str, int]:
    """Where the sender receives RTCP: ``a=rtcp:PORT [IN IP4 ADDRESS]`` or RTP + 1."""
    parts = (attribute or "").split()
    if parts and parts[0].isdigit() and 0 < int(parts[0]) < 65536:
        host = parts[3] if len(parts) >= 4 else rtp[0]
        return (host, int(parts[0]))
    return (rtp[0], rtp[1] + 1)


def try_anchor(body: bytes, host: str, port: int) -> Anchored | None:
    try:
        return anchor_sdp(body, host, port)
    except (SdpParseError, ValueError):
        return None
