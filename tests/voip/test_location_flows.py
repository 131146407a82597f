"""How a node reaches a registered contact: UDP directly, a stream through its holder."""

from voip.location import Contact
from voip.transport.base import Flow


def contact(
    transport: str, *, connection: int = 0, instance: str = "i-a", relay: str = ""
) -> Contact:
    return Contact(
        aor="1002",
        uri="sip:1002@df7jal23ls0d.invalid;transport=ws",
        expires_at=0.0,
        call_id="c",
        cseq=1,
        transport=transport,
        source="192.0.2.7:40000",
        connection=connection,
        node="node-a",
        instance=instance,
        relay=relay,
    )


def test_udp_contacts_are_reached_from_any_node() -> None:
    assert contact("UDP").flow("i-b") == Flow("UDP", "192.0.2.7", 40000)


def test_the_holder_uses_its_connection_others_relay_through_it() -> None:
    ws = contact("WS", connection=12, relay="10.0.0.1:5060")
    assert ws.flow("i-a") == Flow("WS", "192.0.2.7", 40000, 12)
    assert ws.flow("i-b") == Flow("UDP", "10.0.0.1", 5060)


def test_a_websocket_contact_without_holder_is_unreachable() -> None:
    assert contact("WS", connection=12).flow("i-b") is None
    assert contact("WS").flow("i-b") is None  # read back from the database
