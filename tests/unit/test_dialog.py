"""Dialog state per RFC 3261 §12."""

from __future__ import annotations

import pytest

from telebridge.sip.dialog import Dialog, DialogError, DialogState
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Request, Response, make_response, parse_message
from telebridge.sip.uri import parse_via

RR = "Record-Route: <sip:p1.example.com;lr>\r\nRecord-Route: <sip:p2.example.com;lr>\r\n"
VIA = parse_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKdlg2;rport")
GATEWAY_CONTACT = "<sip:gw@198.51.100.1:5060>"


def invite(extra: str = "", uri: str = "sip:bob@example.com") -> Request:
    raw = (
        f"INVITE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv\r\n"
        f"{extra}"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@example.com>;tag=alice-tag\r\n'
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: dialog-1\r\n"
        "CSeq: 10 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def answer(request: Request, status: int = 200, contact: str = "<sip:bob@198.51.100.7:5070>") -> Response:
    response = make_response(request, status, to_tag="bob-tag")
    response.headers.add("Contact", contact)
    return response


def from_peer(method: str, cseq: int, extra: str = "") -> Request:
    """An in-dialog request from Alice to the UAS dialog built by :func:`uas_dialog`."""
    raw = (
        f"{method} sip:gw@198.51.100.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKpeer\r\n"
        'From: "Alice" <sip:alice@example.com>;tag=alice-tag\r\n'
        "To: <sip:bob@example.com>;tag=gw-tag\r\n"
        "Call-ID: dialog-1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def uas_dialog(extra: str = "") -> Dialog:
    dialog = Dialog.from_uas(invite(extra), "gw-tag", GATEWAY_CONTACT)
    dialog.confirm()
    return dialog


# --- creation (§12.1) -------------------------------------------------------------


def test_uac_dialog_reverses_record_route_and_targets_the_contact() -> None:
    """RFC 3261 §12.1.2: route set = Record-Route reversed; remote target = the 2xx
    Contact; local sequence = the INVITE's CSeq; remote sequence empty."""
    request = invite(RR)
    dialog = Dialog.from_uac(request, answer(request))
    assert dialog.id == ("dialog-1", "alice-tag", "bob-tag")
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:bob@198.51.100.7:5070"
    assert str(dialog.local_uri) == "sip:alice@example.com" and dialog.local.display == "Alice"
    assert str(dialog.remote_uri) == "sip:bob@example.com" and dialog.remote.tag == "bob-tag"
    assert dialog.local_seq == 10 and dialog.remote_seq is None
    assert dialog.local_contact == "<sip:alice@192.0.2.1:5060>"
    assert dialog.state is DialogState.CONFIRMED and dialog.secure is False


def test_uas_dialog_keeps_record_route_order_and_targets_the_request_contact() -> None:
    """RFC 3261 §12.1.1: route set = Record-Route as received; remote sequence = the
    request's CSeq; local sequence empty; the dialog is early until the 2xx."""
    dialog = Dialog.from_uas(invite(RR), "gw-tag", GATEWAY_CONTACT)
    assert dialog.id == ("dialog-1", "gw-tag", "alice-tag")
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"
    assert dialog.local.tag == "gw-tag" and dialog.remote.tag == "alice-tag"
    assert dialog.remote_seq == 10 and dialog.local_seq is None
    assert dialog.local_contact == GATEWAY_CONTACT
    assert dialog.state is DialogState.EARLY
    dialog.confirm()
    assert dialog.state is DialogState.CONFIRMED


def test_sips_request_uri_sets_the_secure_flag() -> None:
    """RFC 3261 §12.1.1 / §12.1.2: a SIPS Request-URI makes the dialog secure."""
    request = invite(uri="sips:bob@example.com")
    assert Dialog.from_uac(request, answer(request)).secure
    assert Dialog.from_uas(request, "gw-tag", GATEWAY_CONTACT).secure


def test_only_tagged_provisional_or_2xx_responses_create_a_dialog() -> None:
    """RFC 3261 §12.1: 101-199 with a To tag, or 2xx; RFC 2543 2xx without a tag
    gives the empty remote tag."""
    request = invite()
    with pytest.raises(DialogError):
        Dialog.from_uac(request, answer(request, 100))
    with pytest.raises(DialogError):
        Dialog.from_uac(request, answer(request, 486))
    untagged_ringing = make_response(request, 180)
    untagged_ringing.headers.add("Contact", "<sip:bob@h>")
    with pytest.raises(DialogError):
        Dialog.from_uac(request, untagged_ringing)
    untagged_ok = make_response(request, 200)
    untagged_ok.headers.add("Contact", "<sip:bob@h>")
    assert Dialog.from_uac(request, untagged_ok).remote_tag == ""


def test_a_dialog_needs_exactly_one_contact() -> None:
    """RFC 3261 §12.1.2: the remote target is the one Contact URI."""
    request = invite()
    missing = make_response(request, 200, to_tag="bob-tag")
    with pytest.raises(DialogError, match="Contact"):
        Dialog.from_uac(request, missing)
    two = answer(request)
    two.headers.add("Contact", "<sip:bob@other.example.com>")
    with pytest.raises(DialogError) as info:
        Dialog.from_uac(request, two)
    assert isinstance(info.value, SipParseError) and info.value.status == 400


# --- state changes from responses (§12.1.2, §12.2.1.2, §12.3, §13.2.2.4) ---------


def test_early_dialog_is_confirmed_by_the_2xx_which_resets_route_set_and_target() -> None:
    """RFC 3261 §13.2.2.4: a tagged 180 makes an early dialog; the 2xx confirms it and
    the route set and remote target are recomputed from the 2xx."""
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180, contact="<sip:bob@early.example.com>"))
    assert dialog.state is DialogState.EARLY and dialog.route_set == []
    ok = answer(request, 200)
    ok.headers.add("Record-Route", "<sip:p1.example.com;lr>")
    ok.headers.add("Record-Route", "<sip:p2.example.com;lr>")
    dialog.update_from_response(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:bob@198.51.100.7:5070"


def test_non_2xx_final_ends_an_early_dialog() -> None:
    """RFC 3261 §12.3: a non-2xx final response to the INVITE ends its early dialogs."""
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 183))
    dialog.update_from_response(answer(request, 486))
    assert dialog.state is DialogState.TERMINATED


def test_408_or_481_to_an_in_dialog_request_ends_the_dialog() -> None:
    """RFC 3261 §12.2.1.2: the UAC should end the dialog on 481 or 408."""
    for status in (408, 481):
        request = invite()
        dialog = Dialog.from_uac(request, answer(request))
        info = dialog.new_request("INFO", VIA)
        dialog.update_from_response(make_response(info, status))
        assert dialog.state is DialogState.TERMINATED


def test_2xx_to_a_target_refresh_moves_the_remote_target() -> None:
    """RFC 3261 §12.2.1.2: the 2xx to a re-INVITE replaces the remote target; the 2xx
    to a request that is no target refresh does not."""
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    info = dialog.new_request("INFO", VIA)
    dialog.update_from_response(answer(info, 200, contact="<sip:bob@ignored.example.com>"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.7:5070"
    reinvite = dialog.new_request("INVITE", VIA)
    dialog.update_from_response(answer(reinvite, 200, contact="<sip:bob@203.0.113.8:5080>"))
    assert str(dialog.remote_target) == "sip:bob@203.0.113.8:5080"


def test_response_from_another_fork_does_not_update_the_dialog() -> None:
    """RFC 3261 §12.1.2 / §13.2.2.4: a 2xx with another To tag is another dialog."""
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180))
    other = make_response(request, 200, to_tag="fork-2")
    other.headers.add("Contact", "<sip:bob@fork2.example.com>")
    with pytest.raises(DialogError):
        dialog.update_from_response(other)
    assert dialog.state is DialogState.EARLY


# --- building requests (§12.2.1.1) ------------------------------------------------


def test_in_dialog_request_targets_the_remote_target_through_loose_routes() -> None:
    """RFC 3261 §12.2.1.1: Request-URI = remote target, Route = route set (first has
    lr), CSeq = local sequence + 1, From/To with both tags, the dialog's Call-ID."""
    request = invite(RR)
    dialog = Dialog.from_uac(request, answer(request))
    bye = dialog.new_request("BYE", VIA)
    assert bye.uri == "sip:bob@198.51.100.7:5070"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.cseq == (11, "BYE") and dialog.local_seq == 11
    assert bye.from_tag == "alice-tag" and bye.to_tag == "bob-tag"
    assert bye.from_.display == "Alice" and bye.call_id == "dialog-1"
    assert bye.top_via == VIA and bye.headers.get("Max-Forwards") == "70"
    assert bye.headers.get("Contact") is None
    assert isinstance(parse_message(bye.to_bytes()), Request)
    assert dialog.state is DialogState.TERMINATED


def test_strict_route_becomes_the_request_uri_and_the_target_goes_last() -> None:
    """RFC 3261 §12.2.1.1: with a strict first route (no lr) the Request-URI is that
    route (minus parameters a Request-URI may not carry) and the remote target is
    appended to Route."""
    rr = "Record-Route: <sip:strict.example.com;method=INVITE;transport=tcp>\r\nRecord-Route: <sip:p1.example.com;lr>\r\n"
    dialog = Dialog.from_uas(invite(rr), "gw-tag", GATEWAY_CONTACT)
    info = dialog.new_request("INFO", VIA)
    assert info.uri == "sip:strict.example.com;transport=tcp"
    assert info.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:alice@192.0.2.1:5060>"]


def test_uas_first_in_dialog_request_starts_its_empty_sequence() -> None:
    """RFC 3261 §12.2.1.1 / §8.1.1.5: an empty local sequence number starts anew (at 1)."""
    dialog = uas_dialog()
    bye = dialog.new_request("BYE", VIA)
    assert bye.cseq == (1, "BYE")
    assert bye.from_tag == "gw-tag" and bye.to_tag == "alice-tag"
    assert bye.uri == "sip:alice@192.0.2.1:5060"


def test_target_refresh_requests_carry_our_contact_and_body() -> None:
    """RFC 3261 §12.2.1.1 / §14.1: a re-INVITE (or UPDATE) carries our Contact."""
    dialog = uas_dialog()
    reinvite = dialog.new_request("INVITE", VIA, body=b"v=0\r\n", content_type="application/sdp")
    assert reinvite.headers.get("Contact") == GATEWAY_CONTACT
    assert reinvite.headers.get("Content-Type") == "application/sdp" and reinvite.body == b"v=0\r\n"
    update = dialog.new_request("UPDATE", VIA)
    assert update.headers.get("Contact") == GATEWAY_CONTACT


def test_ack_for_a_2xx_reuses_the_cseq_number_of_the_invite() -> None:
    """RFC 3261 §13.2.2.4: the ACK for a 2xx has the INVITE's CSeq number, built like
    any in-dialog request; after a re-INVITE it is the re-INVITE's number."""
    request = invite(RR)
    dialog = Dialog.from_uac(request, answer(request))
    ack = dialog.new_request("ACK", VIA)
    assert ack.cseq == (10, "ACK") and dialog.local_seq == 10
    assert ack.uri == "sip:bob@198.51.100.7:5070" and ack.to_tag == "bob-tag"
    assert ack.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    dialog.new_request("INFO", VIA)
    reinvite = dialog.new_request("INVITE", VIA)
    assert reinvite.cseq == (12, "INVITE")
    assert dialog.new_request("ACK", VIA).cseq == (12, "ACK")


def test_ack_without_an_invite_and_cancel_are_refused() -> None:
    """RFC 3261 §9.1: CANCEL is not an in-dialog request; an ACK needs an INVITE to answer."""
    dialog = uas_dialog()
    with pytest.raises(ValueError, match="ACK"):
        dialog.new_request("ACK", VIA)
    with pytest.raises(ValueError, match="CANCEL"):
        dialog.new_request("CANCEL", VIA)
    assert dialog.local_seq is None


# --- receiving requests (§12.2.2) -------------------------------------------------


def test_lower_remote_cseq_is_out_of_order_and_gets_500() -> None:
    """RFC 3261 §12.2.2: a CSeq lower than the remote sequence number is refused with 500."""
    dialog = uas_dialog()
    with pytest.raises(DialogError) as info:
        dialog.receive_request(from_peer("INFO", 9))
    assert info.value.status == 500 and dialog.remote_seq == 10
    dialog.receive_request(from_peer("INFO", 11))
    assert dialog.remote_seq == 11


def test_ack_and_cancel_do_not_move_the_remote_sequence() -> None:
    """RFC 3261 §12.2.2 / §13.2.2.4: ACK and CANCEL reuse the INVITE's CSeq number."""
    dialog = uas_dialog()
    dialog.receive_request(from_peer("INFO", 20))
    dialog.receive_request(from_peer("ACK", 10))
    assert dialog.remote_seq == 20


def test_request_for_another_dialog_gets_481() -> None:
    """RFC 3261 §12.2.2: a request whose tags match no dialog is answered 481."""
    dialog = uas_dialog()
    stranger = from_peer("BYE", 11)
    stranger.headers.set("To", "<sip:bob@example.com>;tag=not-ours")
    with pytest.raises(DialogError) as info:
        dialog.receive_request(stranger)
    assert info.value.status == 481 and dialog.state is DialogState.CONFIRMED


def test_reinvite_from_the_peer_refreshes_the_remote_target() -> None:
    """RFC 3261 §12.2.2: a target refresh request replaces the remote target."""
    dialog = uas_dialog()
    dialog.receive_request(from_peer("INVITE", 11, "Contact: <sip:alice@203.0.113.5:6000>\r\n"))
    assert str(dialog.remote_target) == "sip:alice@203.0.113.5:6000"
    dialog.receive_request(from_peer("INFO", 12, "Contact: <sip:alice@elsewhere.example.com>\r\n"))
    assert str(dialog.remote_target) == "sip:alice@203.0.113.5:6000"


def test_bye_from_the_peer_ends_the_dialog() -> None:
    """RFC 3261 §15.1.2: a BYE ends the dialog."""
    dialog = uas_dialog()
    dialog.receive_request(from_peer("BYE", 11))
    assert dialog.state is DialogState.TERMINATED


def test_peer_without_from_tag_has_the_empty_remote_tag() -> None:
    """RFC 3261 §12.1.1: a UAS must accept a request without a From tag (RFC 2543)."""
    request = invite()
    request.headers.set("From", "<sip:alice@example.com>")
    dialog = Dialog.from_uas(request, "gw-tag", GATEWAY_CONTACT)
    assert dialog.remote_tag == ""
    bye = dialog.new_request("BYE", VIA)
    assert bye.to_tag is None and bye.from_tag == "gw-tag"
