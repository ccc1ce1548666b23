"""Session-timer negotiation helpers (RFC 4028) as telebridge applies them."""

from __future__ import annotations

from telebridge.calls.session_timer import SessionTimer, answer_headers, min_se_of, session_timer_of, supports_timer
from telebridge.sip.message import Request, Response, parse_message

HEAD = (
    "INVITE sip:echo@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/WSS x.invalid;branch=z9hG4bKa\r\n"
    "From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
)


def invite(extra: str) -> Request:
    message = parse_message((HEAD + extra + "Content-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_jssip_asking_for_90_seconds_gets_it_with_itself_as_refresher() -> None:
    """INTEROP.md: SE=90 from a browser is accepted (no 422 asking for more)."""
    request = invite("Session-Expires: 90\r\nSupported: timer, ice, replaces, outbound\r\n")
    assert answer_headers(request) == [("Session-Expires", "90;refresher=uac"), ("Require", "timer")]


def test_no_session_headers_for_a_peer_that_did_not_ask_or_cannot_refresh() -> None:
    assert answer_headers(invite("")) == []
    assert answer_headers(invite("Session-Expires: 1800\r\n")) == []  # no Supported: timer


def test_parsing_is_total() -> None:
    assert session_timer_of(invite("x: 1800;refresher=uas\r\n")) == SessionTimer(1800, "uas")
    assert session_timer_of(invite("Session-Expires: 600 ; Refresher = UAC\r\n")) == SessionTimer(600, "uac")
    for bad in ("", "abc", "-5", "0", "99999999999", "90;refresher=both"):
        parsed = session_timer_of(invite(f"Session-Expires: {bad}\r\n"))
        assert parsed is None or parsed == SessionTimer(90, None), bad
    assert supports_timer(invite("k: 100rel, timer\r\n"))
    assert not supports_timer(invite("Supported: 100rel\r\n"))


def test_refresh_at_half_and_expiry_before_the_end() -> None:
    """§7.4 refresh at half the interval; §10 the session ends min(32, SE/3) before SE."""
    assert SessionTimer(1800, "uac").refresh_after == 900
    assert SessionTimer(1800, "uac").expires_after == 1768
    assert SessionTimer(90, "uas").expires_after == 60


def test_min_se_of_a_422() -> None:
    response = parse_message(b"SIP/2.0 422 Session Interval Too Small\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n"
                             b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
                             b"Min-SE: 1800\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(response, Response)
    assert min_se_of(response) == 1800
