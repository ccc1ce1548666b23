"""Answering 401/407 challenges to requests telebridge sends (RFC 3261 §22.2-22.3)."""

from __future__ import annotations

from telebridge.sip.auth import AuthOutcome, DigestClient, DigestServer
from telebridge.sip.challenge import ChallengeAnswerer
from telebridge.sip.message import Request, Response, make_response, parse_message

INVITE = (
    "INVITE sip:1002@pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfirst;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@pbx.test>;tag=abc\r\n"
    "To: <sip:1002@pbx.test>\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@127.0.0.1:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)
NOW = 1000.0


def invite() -> Request:
    message = parse_message(INVITE.encode())
    assert isinstance(message, Request)
    return message


def challenge(server: DigestServer, request: Request, status: int, stale: bool = False) -> Response:
    response = make_response(request, status, to_tag="pbx")
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    for value in server.challenge(NOW, stale=stale):
        response.headers.add(name, value)
    return response


def test_a_challenge_is_answered_in_a_new_transaction_of_the_same_sequence() -> None:
    server = DigestServer("pbx.test", algorithms=("MD5",))
    first = invite()
    retry = ChallengeAnswerer(DigestClient("1001", "secret")).retry(first, challenge(server, first, 407))
    assert retry is not None
    assert retry.cseq == (2, "INVITE")
    assert retry.call_id == first.call_id and retry.from_tag == first.from_tag
    assert retry.branch != first.branch and retry.branch.startswith("z9hG4bK")
    assert retry.headers.get("Authorization") is None
    result = DigestServer.verify(server, retry.headers.get("Proxy-Authorization") or "", "INVITE", {"1001": "secret"}.get, NOW)
    assert result.outcome is AuthOutcome.OK and result.username == "1001"
    assert first.cseq == (1, "INVITE")  # the original is untouched


def test_a_second_challenge_means_wrong_credentials_unless_it_is_stale() -> None:
    server = DigestServer("pbx.test", algorithms=("MD5",))
    answerer = ChallengeAnswerer(DigestClient("1001", "wrong"))
    first = invite()
    retry = answerer.retry(first, challenge(server, first, 401))
    assert retry is not None
    assert answerer.retry(retry, challenge(server, retry, 401)) is None
    stale_answerer = ChallengeAnswerer(DigestClient("1001", "secret"))
    retry = stale_answerer.retry(first, challenge(server, first, 401))
    assert retry is not None
    again = stale_answerer.retry(retry, challenge(server, retry, 401, stale=True))
    assert again is not None and again.cseq == (3, "INVITE")
    assert stale_answerer.retry(again, challenge(server, again, 401, stale=True)) is None  # bounded


def test_other_responses_and_unusable_challenges_are_not_retried() -> None:
    answerer = ChallengeAnswerer(DigestClient("1001", "secret"))
    first = invite()
    assert answerer.retry(first, make_response(first, 486)) is None
    bare = make_response(first, 401)
    assert answerer.retry(first, bare) is None
    bare.headers.add("WWW-Authenticate", "Basic realm=x")
    assert answerer.retry(first, bare) is None
