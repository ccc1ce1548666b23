"""Digest authentication: RFC 7616 vectors, client/server round trips, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.sip.auth import (
    AuthError,
    AuthOutcome,
    DigestClient,
    DigestServer,
    digest_response,
    parse_auth_header,
)

# RFC 7616 §3.9.1
RFC7616 = dict(
    username="Mufasa",
    realm="http-auth@example.org",
    password="Circle of Life",
    method="GET",
    uri="/dir/index.html",
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    qop="auth",
    nc="00000001",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
)


@pytest.mark.parametrize(
    "algorithm,expected",
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_responses(algorithm: str, expected: str) -> None:
    """RFC 7616 §3.9.1: the worked example's response for MD5 and SHA-256."""
    assert digest_response(algorithm=algorithm, **RFC7616) == expected


def test_rfc7616_challenge_parses_and_client_reproduces_the_example() -> None:
    """RFC 7616 §3.9.1: answering the example challenge yields the example response."""
    challenge = (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    client = DigestClient("Mufasa", "Circle of Life", random=lambda n: RFC7616["cnonce"])
    value = client.authorization([challenge], "GET", "/dir/index.html")
    params = parse_auth_header(value)
    assert params.get("response") == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert params.get("nc") == "00000001"
    assert params.get("opaque") == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc2617_mode_without_qop() -> None:
    """RFC 2617 §3.2.2.1 (RFC 3261 §22.4): without qop, response = H(HA1:nonce:HA2)."""
    server = DigestServer("sip.example", algorithms=("MD5",))
    nonce = server.new_nonce(100.0)
    response = digest_response(
        algorithm="MD5", username="bob", realm="sip.example", password="pw", method="REGISTER",
        uri="sip:sip.example", nonce=nonce, qop=None, nc=None, cnonce=None,
    )
    value = f'Digest username="bob", realm="sip.example", nonce="{nonce}", uri="sip:sip.example", response="{response}"'
    result = server.verify(value, "REGISTER", {"bob": "pw"}.get, 101.0)
    assert result.outcome is AuthOutcome.OK and result.username == "bob"


def _round_trip(server: DigestServer, password: str, now: float, later: float) -> AuthOutcome:
    client = DigestClient("bob", password)
    value = client.authorization(server.challenge(now), "REGISTER", "sip:127.0.0.1")
    return server.verify(value, "REGISTER", {"bob": "secret"}.get, later).outcome


def test_client_and_server_agree() -> None:
    """RFC 7616 §3.4: our client's credentials pass our server's check."""
    assert _round_trip(DigestServer("r"), "secret", 0.0, 1.0) is AuthOutcome.OK


def test_wrong_password_fails() -> None:
    """RFC 3261 §22.1: a wrong password does not authenticate."""
    assert _round_trip(DigestServer("r"), "guess", 0.0, 1.0) is AuthOutcome.FAILED


def test_expired_nonce_is_stale_not_failed() -> None:
    """RFC 7616 §3.3: a correct answer to an old nonce is re-challenged with stale=true."""
    server = DigestServer("r", nonce_lifetime=30)
    assert _round_trip(server, "secret", 0.0, 31.0) is AuthOutcome.STALE
    assert all("stale=true" in c for c in server.challenge(31.0, stale=True))


def test_nonce_from_another_server_fails() -> None:
    """Nonces carry a MAC under the server's secret: another server's do not verify."""
    client = DigestClient("bob", "secret")
    value = client.authorization(DigestServer("r").challenge(0), "REGISTER", "sip:x")
    assert DigestServer("r").verify(value, "REGISTER", {"bob": "secret"}.get, 1).outcome is AuthOutcome.FAILED


def test_tampered_nonce_timestamp_fails() -> None:
    """Moving a nonce's timestamp forward breaks its MAC."""
    server = DigestServer("r")
    client = DigestClient("bob", "secret")
    challenge = server.challenge(0)[0]
    stamp = challenge.split('nonce="')[1].split(":")[0]
    forged = challenge.replace(f'nonce="{stamp}:', 'nonce="999999:')
    value = client.authorization([forged], "REGISTER", "sip:x")
    assert server.verify(value, "REGISTER", {"bob": "secret"}.get, 1).outcome is AuthOutcome.FAILED


def test_server_offers_algorithms_in_configured_order_and_client_prefers_sha256() -> None:
    """RFC 8760 §2.4: one challenge per algorithm; a capable client picks SHA-256."""
    server = DigestServer("r", algorithms=("MD5", "SHA-256"))
    challenges = server.challenge(0)
    assert ["MD5" in challenges[0], "SHA-256" in challenges[1]] == [True, True]
    value = DigestClient("bob", "secret").authorization(challenges, "REGISTER", "sip:x")
    assert parse_auth_header(value).get("algorithm") == "SHA-256"
    assert server.verify(value, "REGISTER", {"bob": "secret"}.get, 1).outcome is AuthOutcome.OK


def test_unknown_user_and_wrong_realm_fail() -> None:
    """Credentials for a user we do not know, or another realm, fail."""
    server = DigestServer("r")
    value = DigestClient("eve", "x").authorization(server.challenge(0), "REGISTER", "sip:x")
    assert server.verify(value, "REGISTER", {"bob": "secret"}.get, 1).outcome is AuthOutcome.FAILED
    other = DigestServer("elsewhere")
    value = DigestClient("bob", "secret").authorization(other.challenge(0), "REGISTER", "sip:x")
    assert server.verify(value, "REGISTER", {"bob": "secret"}.get, 1).outcome is AuthOutcome.FAILED


def test_bearer_parses() -> None:
    """RFC 6750 / JsSIP authorization_jwt: ``Bearer <token>``."""
    params = parse_auth_header("Bearer abc.def.ghi")
    assert (params.scheme, params.token) == ("Bearer", "abc.def.ghi")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Digest realm="unterminated',
        "Digest realm",
        "Digest =x",
        'Digest realm="a" nonce="b"',
        'Digest realm="a", realm="b"',
        "Bearer",
        "Bearer a b",
        "Di gest realm=a",
        "Digest " + "a=b, " * 2000,
    ],
)
def test_malformed_headers_raise_auth_error(value: str) -> None:
    """DESIGN.md: every parser is total, with one typed error."""
    with pytest.raises(AuthError):
        parse_auth_header(value)


@pytest.mark.parametrize(
    "value",
    ["junk", "Basic Ym9iOnNlY3JldA==", 'Digest username="bob"', 'Digest username="bob", algorithm=SHA-999, nonce="1", uri="u", response="r", realm="r"'],
)
def test_unusable_credentials_fail_without_raising(value: str) -> None:
    """A verifier never raises: malformed or unsupported credentials FAIL."""
    assert DigestServer("r").verify(value, "REGISTER", {"bob": "x"}.get, 0).outcome is AuthOutcome.FAILED


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_parses_or_raises_auth_error(text: str) -> None:
    """The fuzz invariant for the auth header parser and the verifier."""
    try:
        parse_auth_header(text)
    except AuthError:
        pass
    assert DigestServer("r").verify(text, "REGISTER", {"bob": "x"}.get, 0).outcome is not AuthOutcome.OK
