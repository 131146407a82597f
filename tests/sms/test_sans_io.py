"""Sans-I/O cores: segmentation, the delivery state machine, templates, CAP 1.2."""

from __future__ import annotations

import datetime as dt

import pytest

from sms import cap
from sms.segments import Encoding, segment
from sms.service import is_acknowledgement, preview
from sms.states import DeliveryState as S
from sms.states import can_move, from_provider, sources_of
from sms.templating import TemplateError, render, variables_of


def test_71_chinese_characters_are_two_segments() -> None:
    text = "请" * 71
    split = segment(text)
    assert split.encoding is Encoding.UCS2
    assert split.segments == 2
    assert [len(p) for p in split.parts] == [67, 4]
    assert segment("请" * 70).segments == 1
    assert segment("请" * 134).segments == 2 and segment("请" * 135).segments == 3


def test_gsm7_limits_and_extension_characters() -> None:
    assert segment("a" * 160).segments == 1 and segment("a" * 160).encoding is Encoding.GSM7
    assert segment("a" * 161).segments == 2
    assert segment("a" * 306).segments == 2 and segment("a" * 307).segments == 3
    # "€" costs two septets: 80 of them fill exactly one message.
    assert segment("€" * 80).units == 160 and segment("€" * 80).segments == 1
    # An escape pair is never split: 152 plain + "{" moves "{" to the second part.
    split = segment("a" * 152 + "{" + "b" * 10)
    assert split.parts[0] == "a" * 152 and split.parts[1].startswith("{")
    assert segment("Meeting at 3pm").encoding is Encoding.GSM7
    assert segment("Café `x`").encoding is Encoding.UCS2  # backtick is not GSM-7
    assert segment("").segments == 0


def test_emoji_surrogate_pairs_are_not_split() -> None:
    split = segment("a" * 66 + "😀" + "b")
    assert split.units == 69 and split.segments == 1
    split = segment("a" * 66 + "😀" + "b" * 10)
    assert split.parts[0] == "a" * 66 and split.parts[1].startswith("😀")


def test_preview_totals_and_cost() -> None:
    result = preview("请" * 71, recipients=1000, price_per_segment=0.05)
    assert (result.encoding, result.segments, result.total_segments) == ("UCS-2", 2, 2000)
    assert result.estimated_cost == pytest.approx(100.0)


def test_state_machine_is_monotonic() -> None:
    assert can_move(S.QUEUED, S.SENDING) and can_move(S.SENDING, S.SENT)
    assert can_move(S.SENT, S.DELIVERED) and can_move(S.DELIVERED, S.ACKNOWLEDGED)
    assert not can_move(S.DELIVERED, S.SENT)  # a late "sent" callback
    assert not can_move(S.UNDELIVERED, S.DELIVERED)  # same rank: first final word wins
    assert not can_move(S.ACKNOWLEDGED, S.DELIVERED)
    assert can_move(S.SENDING, S.QUEUED)  # refused outright: the only step back
    assert not can_move(S.SENT, S.QUEUED)
    assert can_move(S.QUEUED, S.CANCELLED) and not can_move(S.SENDING, S.CANCELLED)
    assert not can_move(S.CANCELLED, S.ACKNOWLEDGED)
    assert sources_of(S.SENT) == {S.QUEUED, S.SENDING}
    assert from_provider("delivered") is S.DELIVERED and from_provider("queued") is S.SENT
    assert from_provider("bogus") is None


def test_templates_and_acknowledgements() -> None:
    body = "{{place}}于{{time}}召开防汛会议，请{{ place }}准时参加"
    assert variables_of(body) == ["place", "time"]
    assert render(body, {"place": "三楼", "time": "15:00"}).startswith("三楼于15:00")
    with pytest.raises(TemplateError, match="time"):
        render(body, {"place": "三楼"})
    for reply in ("1", "OK", "ok!", " 收到 ", "收到。"):
        assert is_acknowledgement(reply)
    assert not is_acknowledgement("who is this?")


CAP = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>CN-EMERG-2026-0042</identifier>
  <sender>emerg@city.gov.cn</sender>
  <sent>2026-11-21T10:00:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <headline>暴雨红色预警</headline>
    <instruction>请立即停止户外活动。</instruction>
    <area><areaDesc>全市</areaDesc></area>
  </info>
</alert>
"""


def test_cap_parse_build_round_trip() -> None:
    alert = cap.parse(CAP.encode())
    assert alert.identifier == "CN-EMERG-2026-0042"
    assert alert.sent == dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC)
    assert alert.info[0].severity == "Severe" and alert.info[0].area == "全市"
    assert alert.text("zh") == "暴雨红色预警 请立即停止户外活动。"
    again = cap.parse(cap.build(alert))
    assert again == alert


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("<severity>Severe</severity>", "<severity>Awful</severity>"), "severity"),
        (("<sender>emerg@city.gov.cn</sender>", ""), "sender"),
        (("2026-11-21T10:00:00+08:00", "2026-11-21 10:00"), "sent"),
        (("urn:oasis:names:tc:emergency:cap:1.2", "urn:example"), "namespace"),
        (("<alert ", "<!DOCTYPE alert [<!ENTITY x 'y'>]><alert "), "DTD"),
        (("</alert>", ""), "well-formed"),
    ],
)
def test_cap_invalid_documents_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(cap.CapError, match=message):
        cap.parse(CAP.replace(*change).encode())
