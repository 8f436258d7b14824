"""SIP dialogs (RFC 3261 12) and the UA helpers (REGISTER, OPTIONS, CANCEL, identifiers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.sip.dialog import DIALOG_TABLE, Dialog, DialogEvent, DialogState
from common.sip.message import NameAddr, SipParseError, SipRequest, SipResponse, make_response, parse_uri
from common.sip.transaction import LocalProtocolError, Refuse, Transition
from common.sip.ua import IdGenerator, build_cancel, build_options, build_register

BARESIP = Path(__file__).parent / "vectors" / "sip" / "baresip"
LOCAL = ("127.0.0.1", 5080)


def baresip_invite() -> SipRequest:
    return SipRequest.parse((BARESIP / "invite.sip").read_bytes())


def baresip_ok() -> SipResponse:
    return SipResponse.parse((BARESIP / "ok_invite.sip").read_bytes())


def test_dialog_table_covers_every_pair():
    assert set(DIALOG_TABLE) == {(s, e) for s in DialogState for e in DialogEvent}
    for (state, _), entry in DIALOG_TABLE.items():
        assert isinstance(entry, Refuse) if state is DialogState.TERMINATED else isinstance(entry, Transition)


def test_uac_dialog_builds_ack_and_bye_like_baresip():
    dialog = Dialog.from_uac(baresip_invite(), baresip_ok())
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == ("5bc8e228f70dc6be", "ee03cef9bd5d5e10", "8b507eca79aca767")
    assert str(dialog.remote_target) == "sip:5552002-0x55d86e70be70@127.0.0.1:5072"
    ack = dialog.create_ack(23629, local=("127.0.0.1", 5070), branch="z9hG4bK2a1f5c0d7e3b9a44")
    assert bytes(ack) == (BARESIP / "ack.sip").read_bytes()
    bye = dialog.create_request("BYE", local=("127.0.0.1", 5070), branch="z9hG4bK77e0c5c1d93f1b02",
                                headers=[("User-Agent", "baresip v1.0.0 (x86_64/linux)")])
    assert bytes(bye) == (BARESIP / "bye.sip").read_bytes()
    assert dialog.local_seq == 23630


def test_uas_dialog_and_in_dialog_checks():
    invite = baresip_invite()
    dialog = Dialog.from_uas(invite, "8b507eca79aca767")
    assert dialog.state is DialogState.EARLY and dialog.remote_seq == 23629
    dialog.handle(DialogEvent.SUCCESS)
    bye = SipRequest.parse((BARESIP / "bye.sip").read_bytes())
    old = SipRequest.parse((BARESIP / "bye.sip").read_bytes().replace(b"23630 BYE", b"23629 BYE"))
    with pytest.raises(SipParseError) as info:
        dialog.receive_request(old)
    assert info.value.status == 500
    dialog.receive_request(bye)
    assert dialog.state is DialogState.TERMINATED and dialog.remote_seq == 23630
    with pytest.raises(LocalProtocolError, match="terminated"):
        dialog.create_request("BYE", local=LOCAL, branch="z9hG4bKx")
    with pytest.raises(LocalProtocolError):
        dialog.handle(DialogEvent.BYE)


def test_route_sets_loose_and_strict():
    invite = baresip_invite()
    ok = baresip_ok()
    ok.headers.add("Record-Route", "<sip:sc-b.example;lr>")
    ok.headers.add("Record-Route", "<sip:sc-a.example;lr>")
    dialog = Dialog.from_uac(invite, ok)
    assert [str(r.uri) for r in dialog.route_set] == ["sip:sc-a.example;lr", "sip:sc-b.example;lr"]
    bye = dialog.create_request("BYE", local=LOCAL, branch="z9hG4bK1")
    assert bye.uri == dialog.remote_target and [str(r.uri) for r in bye.routes] == ["sip:sc-a.example;lr", "sip:sc-b.example;lr"]
    dialog.route_set = [NameAddr(parse_uri("sip:strict.example"))]
    bye = dialog.create_request("BYE", local=LOCAL, branch="z9hG4bK2")
    assert str(bye.uri) == "sip:strict.example" and [str(r.uri) for r in bye.routes] == [str(dialog.remote_target)]
    uas = Dialog.from_uas(SipRequest.parse(bytes(invite).replace(b"Max-Forwards: 70\r\n",
                          b"Max-Forwards: 70\r\nRecord-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n")), "t")
    assert [str(r.uri) for r in uas.route_set] == ["sip:p1;lr", "sip:p2;lr"]


def test_dialog_responses_and_errors():
    invite = baresip_invite()
    ringing = make_response(invite, 180, to_tag="t", headers=[("Contact", "<sip:b@127.0.0.1:5072>")])
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state is DialogState.EARLY
    assert dialog.update_from_response(ringing) is DialogState.EARLY
    assert dialog.update_from_response(make_response(invite, 486, to_tag="t")) is DialogState.TERMINATED
    with pytest.raises(SipParseError, match="tag"):
        Dialog.from_uac(invite, make_response(invite, 200))
    with pytest.raises(SipParseError, match="Contact"):
        Dialog.from_uac(invite, make_response(invite, 200, to_tag="t"))
    confirmed = Dialog.from_uac(invite, baresip_ok())
    bye = confirmed.create_request("BYE", local=LOCAL, branch="z9hG4bK3")
    assert confirmed.update_from_response(make_response(bye, 481, to_tag="t")) is DialogState.TERMINATED
    with pytest.raises(LocalProtocolError):
        confirmed.create_request("ACK", local=LOCAL, branch="z9hG4bK4")


def counter_rng():
    n = [0]

    def rng(size: int) -> bytes:
        n[0] += 1
        return bytes([n[0]]) * size
    return rng


def test_id_generator_is_injectable():
    ids = IdGenerator(counter_rng())
    assert ids.branch() == "z9hG4bK" + "01" * 8
    assert ids.tag() == "02" * 8
    assert ids.call_id("cta.example") == "03" * 16 + "@cta.example"
    assert ids.cseq() == 0x0404 + 1
    assert len(IdGenerator().branch()) == 7 + 16


def test_build_register_and_options():
    aor = NameAddr(parse_uri("sip:5551001@sc.example"))
    contact = NameAddr(parse_uri("sip:5551001@192.0.2.10:5070"), params={"expires": "600"})
    reg = build_register(registrar=parse_uri("sip:sc.example"), aor=aor, contact=contact, expires=600,
                         call_id="c1", cseq=2, from_tag="f", local=("192.0.2.10", 5070), branch="z9hG4bKr")
    parsed = SipRequest.parse(bytes(reg))
    assert parsed.method == "REGISTER" and parsed.expires == 600 and parsed.from_.tag == "f"
    assert parsed.to.tag is None and parsed.contacts[0].expires == 600 and parsed.max_forwards == 70
    assert parsed.top_via.rport_requested and parsed.top_via.branch == "z9hG4bKr"
    opt = build_options(parse_uri("sip:sc.example"), from_=aor.with_tag("f"), call_id="c2", cseq=1,
                        local=("192.0.2.10", 5070), branch="z9hG4bKo")
    parsed = SipRequest.parse(bytes(opt))
    assert parsed.cseq.method == "OPTIONS" and parsed.headers.get("Accept") == "application/sdp"


def test_build_cancel_rfc3261_9_1():
    invite = baresip_invite()
    cancel = SipRequest.parse(bytes(build_cancel(invite)))
    assert cancel.uri == invite.uri and cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq.seq == invite.cseq.seq and cancel.cseq.method == "CANCEL"
    assert cancel.from_ == invite.from_ and cancel.to == invite.to and cancel.body == b""
