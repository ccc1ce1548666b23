"""The ICE-lite agent: checks, nomination, moves, consent (RFC 8445, RFC 7675)."""

from __future__ import annotations

import struct

from twisted.internet.task import Clock

from telebridge.media.ice import ConsentLost, IceLiteAgent, IceState, PairSelected, SendTo
from telebridge.media.stun import (
    BINDING,
    ERROR,
    ICE_CONTROLLING,
    PRIORITY,
    REQUEST,
    SUCCESS,
    USE_CANDIDATE,
    USERNAME,
    StunMessage,
    parse_stun,
)

BROWSER = ("127.0.0.1", 50000)
TURN = ("127.0.0.1", 3478)


def agent() -> IceLiteAgent:
    a = IceLiteAgent("gwfrag", "gateway-password-0123456789")
    a.set_remote_credentials("brfrag", "browser-password-0123456789")
    return a


def check(tid: bytes = b"\x01" * 12, username: str = "gwfrag:brfrag", password: str = "gateway-password-0123456789", nominate: bool = False) -> bytes:
    """A check as a controlling browser sends it (RFC 8445 §7.2.2)."""
    message = StunMessage(BINDING, REQUEST, tid)
    message.add(USERNAME, username.encode())
    message.add(PRIORITY, struct.pack("!I", 1853817087))
    message.add(ICE_CONTROLLING, b"\x00" * 8)
    if nominate:
        message.add(USE_CANDIDATE, b"")
    return message.encode(integrity_key=password.encode())


def test_valid_check_gets_success_with_our_integrity_and_the_source_address() -> None:
    """RFC 8445 §7.3.1: a success response with XOR-MAPPED-ADDRESS of the source."""
    a = agent()
    [reply] = a.receive(check(), BROWSER, 0.0)
    assert isinstance(reply, SendTo) and reply.address == BROWSER
    response = parse_stun(reply.data)
    assert response.cls == SUCCESS and response.xor_mapped_address() == BROWSER
    assert response.check_integrity(b"gateway-password-0123456789") and response.check_fingerprint()
    assert a.state is IceState.NEW and a.accepts_media_from(BROWSER)


def test_nomination_selects_the_pair() -> None:
    """RFC 8445 §7.3.1.5: USE-CANDIDATE from the controlling agent selects the pair."""
    a = agent()
    events = a.receive(check(nominate=True), BROWSER, 0.0)
    assert PairSelected(BROWSER) in events
    assert a.state is IceState.CONNECTED and a.selected == BROWSER


def test_browser_moving_to_a_relay_moves_the_selected_pair() -> None:
    """Issue 3 §2: the agent follows the browser onto another pair (a TURN relay)."""
    a = agent()
    a.receive(check(nominate=True), BROWSER, 0.0)
    events = a.receive(check(b"\x02" * 12, nominate=True), TURN, 1.0)
    assert PairSelected(TURN) in events and a.selected == TURN


def test_wrong_password_or_ufrag_gets_401_and_changes_nothing() -> None:
    """RFC 8489 §9.1.3: a bad MESSAGE-INTEGRITY gets 401; nothing is learnt."""
    a = agent()
    for bad in (check(password="not-the-password-0123456789", nominate=True), check(username="other:brfrag", nominate=True), check(username="gwfrag:intruder", nominate=True)):
        [reply] = a.receive(bad, ("127.0.0.9", 9999), 0.0)
        response = parse_stun(reply.data)  # type: ignore[union-attr]
        assert response.cls == ERROR and response.error_code == (401, "Unauthorized")
    assert a.selected is None and not a.accepts_media_from(("127.0.0.9", 9999))
    assert a.checks_refused == 3


def test_check_without_integrity_gets_400() -> None:
    """RFC 8445 §7.3: a check needs USERNAME and MESSAGE-INTEGRITY."""
    a = agent()
    bare = StunMessage(BINDING, REQUEST, b"\x03" * 12).add(USERNAME, b"gwfrag:brfrag").encode()
    [reply] = a.receive(bare, BROWSER, 0.0)
    assert parse_stun(reply.data).error_code == (400, "Bad Request")  # type: ignore[union-attr]


def test_garbage_is_ignored() -> None:
    """Non-STUN bytes and STUN responses change nothing and send nothing."""
    a = agent()
    assert a.receive(b"\x00\x01garbage", BROWSER, 0.0) == []
    response = StunMessage(BINDING, SUCCESS, b"\x04" * 12).encode()
    assert a.receive(response, BROWSER, 0.0) == []


def test_checks_before_the_answer_are_answered_with_our_password() -> None:
    """Checks may beat the SDP answer; our password alone authenticates them."""
    a = IceLiteAgent("gwfrag", "gateway-password-0123456789")
    [reply] = a.receive(check(), BROWSER, 0.0)
    assert parse_stun(reply.data).cls == SUCCESS  # type: ignore[union-attr]


def test_consent_expires_30_s_after_the_last_valid_check() -> None:
    """RFC 7675 §5.1: no valid check for 30 s ends consent."""
    clock = Clock()
    a = agent()
    a.receive(check(nominate=True), BROWSER, clock.seconds())
    clock.advance(20)
    a.receive(check(b"\x05" * 12), BROWSER, clock.seconds())
    assert a.get_timer() == 50.0
    assert a.handle_timer(49.9) == []
    assert a.handle_timer(50.0) == [ConsentLost(BROWSER)]
    assert a.state is IceState.FAILED


def test_ice_restart_forgets_old_credentials() -> None:
    """RFC 8445 §9: after new remote credentials, checks with the old ufrag fail."""
    a = agent()
    a.receive(check(nominate=True), BROWSER, 0.0)
    a.set_remote_credentials("newfrag", "new-browser-password-01234")
    [reply] = a.receive(check(b"\x06" * 12), BROWSER, 1.0)
    assert parse_stun(reply.data).error_code == (401, "Unauthorized")  # type: ignore[union-attr]
    [reply, selected] = a.receive(check(b"\x07" * 12, username="gwfrag:newfrag", nominate=True), TURN, 2.0)
    assert selected == PairSelected(TURN)


def test_ice_restart_changes_our_credentials_and_keeps_the_old_pair_until_the_new_nomination() -> None:
    """RFC 8445 §9: both sides change credentials; consent checks on the pair in
    use (old credentials) are still answered until a new nomination completes
    the restart; a nomination under the old ones moves nothing."""
    a = agent()
    a.receive(check(nominate=True), BROWSER, 0.0)
    a.restart(("gwnew", "gateway-new-password-0123456"), ("brnew", "browser-new-password-0123"))
    [consent] = a.receive(check(b"\x08" * 12), BROWSER, 1.0)
    assert parse_stun(consent.data).cls == SUCCESS  # type: ignore[union-attr]
    assert a.receive(check(b"\x09" * 12, nominate=True), TURN, 1.5) != [] and a.selected == BROWSER
    new = check(b"\x0a" * 12, username="gwnew:brnew", password="gateway-new-password-0123456", nominate=True)
    [reply, selected] = a.receive(new, TURN, 2.0)
    assert selected == PairSelected(TURN) and a.previous is None
    [refused] = a.receive(check(b"\x0b" * 12), BROWSER, 3.0)
    assert parse_stun(refused.data).error_code == (401, "Unauthorized")  # type: ignore[union-attr]


def test_mdns_candidates_are_kept_not_resolved() -> None:
    """INTEROP.md: browsers send ``.local`` host candidates; they are accepted as-is."""
    a = agent()
    a.add_remote_candidate("candidate:1 1 udp 2122260223 4e1c3b7a-1b2c.local 54321 typ host")
    a.receive(check(nominate=True), BROWSER, 0.0)
    assert a.selected == BROWSER and len(a.remote_candidates) == 1
