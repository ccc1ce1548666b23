"""Dialog state per RFC 3261 §12."""

from __future__ import annotations

import pytest

from telebridge.sip.dialog import Dialog, DialogState
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Request, Response, make_response, parse_message


def invite(record_route: str = "") -> Request:
    raw = (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv\r\n"
        f"{record_route}"
        "From: <sip:alice@example.com>;tag=alice-tag\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: dialog-1\r\n"
        "CSeq: 10 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def answer(request: Request, status: int = 200) -> Response:
    response = make_response(request, status, to_tag="bob-tag")
    response.headers.add("Contact", "<sip:bob@198.51.100.7:5070>")
    return response


RR = "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\n"


def test_uac_dialog_reverses_record_route_and_targets_contact() -> None:
    """§12.1.2: route set is Record-Route reversed; remote target is the 2xx Contact."""
    request = invite(RR)
    dialog = Dialog.from_uac(request, answer(request))
    assert dialog.id == ("dialog-1", "alice-tag", "bob-tag")
    assert dialog.route_set == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert str(dialog.remote_target) == "sip:bob@198.51.100.7:5070"
    assert dialog.state is DialogState.CONFIRMED


def test_uas_dialog_keeps_record_route_order() -> None:
    """§12.1.1: the UAS keeps Record-Route as received and targets the request's Contact."""
    dialog = Dialog.from_uas(invite(RR), "bob-tag")
    assert dialog.route_set == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert dialog.id == ("dialog-1", "bob-tag", "alice-tag")
    assert dialog.remote_seq == 10 and dialog.state is DialogState.EARLY


def test_early_dialog_confirmed_by_2xx() -> None:
    """§12.1.2 / §13.2.2.4: a tagged 180 makes an early dialog; the 200 confirms it."""
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180))
    assert dialog.state is DialogState.EARLY
    dialog.update_from_response(answer(request), "INVITE")
    assert dialog.state is DialogState.CONFIRMED


def test_in_dialog_request_increments_cseq_and_carries_both_tags() -> None:
    """§12.2.1.1: Request-URI = remote target, Route = route set, CSeq + 1."""
    request = invite(RR)
    dialog = Dialog.from_uac(request, answer(request))
    bye = dialog.new_request("BYE", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye")
    assert bye.uri == "sip:bob@198.51.100.7:5070"
    assert bye.cseq == (11, "BYE")
    assert bye.from_tag == "alice-tag" and bye.to_tag == "bob-tag"
    assert bye.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert dialog.state is DialogState.TERMINATED


def test_ack_for_2xx_reuses_the_invite_cseq() -> None:
    """§13.2.2.4: the ACK for a 2xx has the INVITE's CSeq number."""
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    ack = dialog.new_request("ACK", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKack", cseq=10)
    assert ack.cseq == (10, "ACK") and dialog.local_seq == 10


def test_lower_remote_cseq_is_out_of_order() -> None:
    """§12.2.2: a request with a lower CSeq than the last is refused (500)."""
    dialog = Dialog.from_uas(invite(), "bob-tag", confirmed=True)
    info = invite()
    info.method = "INFO"
    info.headers.set("CSeq", "9 INFO")
    assert dialog.receive_request(info) is False
    info.headers.set("CSeq", "11 INFO")
    assert dialog.receive_request(info) is True and dialog.remote_seq == 11


def test_reinvite_refreshes_the_remote_target() -> None:
    """§12.2.2: a target-refresh request moves the remote target."""
    dialog = Dialog.from_uas(invite(), "bob-tag", confirmed=True)
    reinvite = invite()
    reinvite.headers.set("CSeq", "11 INVITE")
    reinvite.headers.set("Contact", "<sip:alice@203.0.113.5:6000>")
    assert dialog.receive_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@203.0.113.5:6000"


def test_strict_route_and_missing_tags_are_refused() -> None:
    """Strict routing is not supported; a dialog needs both tags."""
    with pytest.raises(SipParseError, match="strict routing"):
        Dialog.from_uas(invite("Record-Route: <sip:old.example>\r\n"), "t")
    request = invite()
    untagged = make_response(request, 200)
    untagged.headers.add("Contact", "<sip:bob@h>")
    with pytest.raises(SipParseError):
        Dialog.from_uac(request, untagged)
