import pytest

from voip.sip.dialog import Dialog, DialogState
from voip.sip.errors import SipParseError
from voip.sip.headers import Headers
from voip.sip.message import Request, Via
from voip.sip.parser import parse_message
from voip.sip.uri import NameAddr, parse_uri

VIA = Via("UDP", "10.0.0.1", 5060, {"rport": None})


def make_invite() -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv"),
            ("Max-Forwards", "70"),
            ("From", '"Alice" <sip:alice@a.example>;tag=alice-tag'),
            ("To", "<sip:bob@b.example>"),
            ("Call-ID", "call-9"),
            ("CSeq", "10 INVITE"),
            ("Contact", "<sip:alice@10.0.0.1:5060>"),
            ("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>"),
        ]
    )
    return Request("INVITE", parse_uri("sip:bob@b.example"), headers)


def test_uac_dialog_and_requests() -> None:
    invite = make_invite()
    ringing = invite.response(180, to_tag="bob-tag")
    ringing.headers.add("Contact", "<sip:bob@10.0.0.2>")
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state is DialogState.EARLY
    assert dialog.id == ("call-9", "alice-tag", "bob-tag")
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p2.example;lr", "sip:p1.example;lr"]
    ok = invite.response(200, to_tag="bob-tag")
    ok.headers.add("Contact", "<sip:bob@10.0.0.3>")
    dialog.update_from_response(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.remote_target) == "sip:bob@10.0.0.3"
    assert not dialog.secure

    ack = dialog.create_ack(10, via=VIA)
    assert ack.cseq.number == 10 and ack.cseq.method == "ACK"
    assert dialog.local_seq == 10
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.cseq.number == 11 and dialog.local_seq == 11
    assert str(bye.uri) == "sip:bob@10.0.0.3"
    assert bye.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert bye.from_tag == "alice-tag" and bye.to_tag == "bob-tag"
    assert bye.from_.display_name == "Alice"
    assert bye.top_via.branch != ack.top_via.branch and bye.top_via.wants_rport
    assert VIA.branch is None
    parse_message(bytes(bye)).validate()

    refer = dialog.create_request(
        "REFER",
        via=VIA,
        contact=NameAddr(parse_uri("sip:alice@10.0.0.1")),
        headers=[("Refer-To", "<sip:carol@c.example>")],
    )
    assert refer.headers.get("Refer-To") == "<sip:carol@c.example>"
    assert str(refer.contacts[0].uri) == "sip:alice@10.0.0.1"
    reinvite = dialog.create_request(
        "INVITE", via=VIA, body=b"v=0\r\n", content_type="application/sdp"
    )
    assert reinvite.content_type == "application/sdp" and reinvite.cseq.number == 13
    assert b"Content-Length: 5" in bytes(reinvite)


def test_uas_dialog_and_cseq_ordering() -> None:
    invite = make_invite()
    ok = invite.response(200, to_tag="bob-tag")
    dialog = Dialog.from_uas(invite, ok)
    assert dialog.id == ("call-9", "bob-tag", "alice-tag")
    assert dialog.remote_seq == 10 and not dialog.is_uac
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.cseq.number == 1 and str(bye.uri) == "sip:alice@10.0.0.1:5060"
    assert bye.from_tag == "bob-tag" and bye.to_tag == "alice-tag"

    reinvite = make_invite()
    reinvite.headers.set("CSeq", "11 INVITE")
    reinvite.headers.set("Contact", "<sip:alice@10.0.0.9>")
    assert dialog.receive_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@10.0.0.9" and dialog.remote_seq == 11
    assert not dialog.receive_request(reinvite)
    ack = make_invite()
    ack.method = "ACK"
    ack.headers.set("CSeq", "11 ACK")
    assert dialog.receive_request(ack)


def test_strict_route() -> None:
    invite = make_invite()
    invite.headers.set("Record-Route", "<sip:strict.example>, <sip:p2.example;lr>")
    dialog = Dialog.from_uas(invite, invite.response(200, to_tag="b"))
    bye = dialog.create_request("BYE", via=VIA)
    assert str(bye.uri) == "sip:strict.example"
    assert bye.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:alice@10.0.0.1:5060>"]


def test_sips_target_is_secure() -> None:
    invite = make_invite()
    invite.headers.set("Contact", "<sips:alice@10.0.0.1>")
    assert Dialog.from_uas(invite, invite.response(200, to_tag="b")).secure


def test_missing_contact_or_tags() -> None:
    invite = make_invite()
    with pytest.raises(SipParseError):
        Dialog.from_uac(invite, invite.response(200, to_tag="b"))
    invite.headers.remove("Contact")
    with pytest.raises(SipParseError):
        Dialog.from_uas(invite, invite.response(200, to_tag="b"))
