"""GET /api/ice-servers: TURN REST credentials and static entries, behind the browser token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from telebridge.config import IceServer
from telebridge.metrics import Counters
from telebridge.web.http import IceServersResource
from telebridge.web.ice_servers import IceServerList, turn_credentials
from telebridge.web.tokens import TokenVerifier, mint_token

SECRET = "browser-token-secret-0123456789abcdef"
TURN_SECRET = "coturn-shared-secret"
START = 1_700_000_000


def test_turn_credentials_follow_coturn_use_auth_secret() -> None:
    """draft-uberti-behave-turn-rest-00 §2.2: username EXPIRY:USER, credential base64(HMAC-SHA1(secret, username))."""
    username, credential = turn_credentials(TURN_SECRET, "alice", START, 86400)
    assert username == "1700086400:alice"
    by_hand = base64.b64encode(hmac.new(b"coturn-shared-secret", b"1700086400:alice", hashlib.sha1).digest()).decode()
    assert credential == by_hand == "BptBXEECUc4aF1huCrjGND+FqW4="


def test_fractional_time_is_truncated_like_coturn_reads_it() -> None:
    """coturn parses EXPIRY as an integer: the username never holds a fraction."""
    assert turn_credentials(TURN_SECRET, "bob", START + 0.9, 60)[0] == "1700000060:bob"


def test_turn_entry_comes_first_then_static_entries_as_written() -> None:
    """The TURN URLs share one credential; static entries keep only the fields they have."""
    servers = IceServerList(
        ("turn:127.0.0.1:3478?transport=udp", "turns:turn.example.org:5349"),
        TURN_SECRET,
        600,
        (IceServer(("stun:stun.example.org",)), IceServer(("turn:t.example.org",), "u", "p")),
    )
    username, credential = turn_credentials(TURN_SECRET, "carol", START, 600)
    assert servers.for_user("carol", START) == [
        {
            "urls": ["turn:127.0.0.1:3478?transport=udp", "turns:turn.example.org:5349"],
            "username": username,
            "credential": credential,
        },
        {"urls": ["stun:stun.example.org"]},
        {"urls": ["turn:t.example.org"], "username": "u", "credential": "p"},
    ]


def test_no_turn_configured_gives_only_the_static_list() -> None:
    """Without [turn] the list holds what the config lists, possibly nothing."""
    assert IceServerList().for_user("dave", START) == []
    assert IceServerList(static=(IceServer(("stun:s.example.org",)),)).for_user("dave", START) == [
        {"urls": ["stun:s.example.org"]}
    ]


def _resource(clock: Clock, counters: Counters | None = None) -> IceServersResource:
    servers = IceServerList(("turn:127.0.0.1:3478",), TURN_SECRET, 3600)
    return IceServersResource(servers, TokenVerifier(SECRET, None, ("HS256",)), clock, counters or Counters())


def _get(resource: IceServersResource, query_token: str | None = None, authorization: str | None = None) -> tuple[int, dict, DummyRequest]:  # type: ignore[type-arg]
    request = DummyRequest([b""])
    if query_token is not None:
        request.args = {b"token": [query_token.encode()]}
    if authorization is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [authorization.encode()])
    body = resource.render_GET(request)
    return request.responseCode or 200, json.loads(body), request


def _clock_at(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def test_query_token_gets_credentials_that_expire_from_the_injected_clock() -> None:
    """?token=JWT: the TURN username's expiry is the clock's now + ttl, for the token's user."""
    clock = _clock_at(START)
    token = mint_token("erin", 300, SECRET, "HS256", START)
    status, body, request = _get(_resource(clock), query_token=token)
    assert status == 200
    (turn,) = body["iceServers"]
    assert turn["username"] == f"{START + 3600}:erin"
    assert turn["credential"] == turn_credentials(TURN_SECRET, "erin", START, 3600)[1]
    assert request.responseHeaders.getRawHeaders(b"cache-control") == [b"no-store"]
    clock.advance(100)
    _, later, _ = _get(_resource(clock), query_token=token)
    assert later["iceServers"][0]["username"] == f"{START + 100 + 3600}:erin"


def test_bearer_header_is_accepted_and_wins_over_the_query() -> None:
    """RFC 6750 §2.1: Authorization: Bearer JWT, the scheme case-insensitive."""
    clock = _clock_at(START)
    token = mint_token("frank", 300, SECRET, "HS256", START)
    status, body, _ = _get(_resource(clock), query_token="garbage", authorization=f"bearer {token}")
    assert status == 200
    assert body["iceServers"][0]["username"].endswith(":frank")


def test_missing_token_is_401_with_a_json_error() -> None:
    """No token at all: 401, a JSON reason, and the RFC 6750 §3 challenge."""
    counters = Counters()
    status, body, request = _get(_resource(_clock_at(START), counters))
    assert status == 401 and "token is required" in body["error"]
    assert request.responseHeaders.getRawHeaders(b"www-authenticate") == [b'Bearer realm="telebridge"']
    assert counters.get("http_api_refused_total", path="ice-servers", reason="missing") == 1


def test_bad_expired_or_foreign_tokens_are_401() -> None:
    """Checked as the WebSocket upgrade checks them: signature, expiry, algorithm."""
    counters = Counters()
    clock = _clock_at(START)
    expired = mint_token("gina", 60, SECRET, "HS256", START - 120)
    other_secret = mint_token("gina", 60, "some-other-secret-0123456789abcdefgh", "HS256", START)
    for token in ("not-a-jwt", expired, other_secret, "Bearer"):
        status, body, _ = _get(_resource(clock, counters), query_token=token)
        assert status == 401 and body == {"error": "invalid or expired token"}, token
    status, _, _ = _get(_resource(clock, counters), authorization="Basic dXNlcjpwYXNz")
    assert status == 401
    assert counters.get("http_api_refused_total", path="ice-servers", reason="token") == 4


def test_cors_preflight_allows_the_authorization_header() -> None:
    """An app on another origin sends Authorization, which needs a preflight."""
    request = DummyRequest([b""])
    _resource(_clock_at(START)).render_OPTIONS(request)
    assert request.responseCode == 204
    assert request.responseHeaders.getRawHeaders(b"access-control-allow-headers") == [b"Authorization"]
    assert request.responseHeaders.getRawHeaders(b"access-control-allow-origin") == [b"*"]
