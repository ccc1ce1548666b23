"""Browser tokens (JWT): HS256 secret, RS256/ES256 public keys, and refusals."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.cli import main
from telebridge.config import load_config
from telebridge.web.tokens import TokenError, TokenVerifier, mint_token, resolve_token_secret

SECRET = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def hs_verifier() -> TokenVerifier:
    return TokenVerifier(SECRET, None, ("HS256",))


def test_hs256_token_verifies() -> None:
    """Issue 2 §6: sub and exp from an HS256 token."""
    claims = hs_verifier().verify(mint_token("alice", 60, SECRET, "HS256", NOW), NOW + 1)
    assert (claims.sub, claims.exp) == ("alice", int(NOW) + 60)


def test_expired_token_is_refused() -> None:
    """exp is checked against the time passed in."""
    token = mint_token("alice", 60, SECRET, "HS256", NOW)
    with pytest.raises(TokenError, match="expired"):
        hs_verifier().verify(token, NOW + 60)


def test_wrong_secret_is_refused() -> None:
    """A token signed with another secret does not verify."""
    token = mint_token("alice", 60, "another secret of enough length!", "HS256", NOW)
    with pytest.raises(TokenError):
        hs_verifier().verify(token, NOW)


@pytest.mark.parametrize("claims", [{"exp": NOW + 60}, {"sub": "alice"}, {"sub": "", "exp": NOW + 60}, {"sub": "a b", "exp": NOW + 60}, {"sub": 7, "exp": NOW + 60}])
def test_missing_or_bad_claims_are_refused(claims: dict[str, object]) -> None:
    """sub (a SIP user name) and exp are required."""
    with pytest.raises(TokenError):
        hs_verifier().verify(jwt.encode(claims, SECRET, algorithm="HS256"), NOW)


def test_alg_none_is_refused() -> None:
    """An unsigned token never passes (the classic JWT attack)."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps({"sub": "alice", "exp": NOW + 60}).encode()).rstrip(b"=")
    with pytest.raises(TokenError, match="not accepted"):
        hs_verifier().verify(f"{header.decode()}.{body.decode()}.", NOW)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_tokens_verify_and_hs256_confusion_fails(tmp_path: Path, algorithm: str) -> None:
    """An app server signs with its private key; telebridge holds only the public key."""
    key = rsa.generate_private_key(65537, 2048) if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(public_pem)
    (tmp_path / "c.toml").write_text('[auth]\ntoken_public_key = "pub.pem"\n')
    config = load_config(tmp_path / "c.toml")
    verifier = TokenVerifier.from_config(config, resolve_token_secret(config))
    token = jwt.encode({"sub": "bob", "exp": NOW + 60}, key, algorithm=algorithm)
    assert verifier.verify(token, NOW).sub == "bob"
    # HS256 signed with the public key's bytes must not be accepted.
    forged = jwt.encode({"sub": "bob", "exp": NOW + 60}, "x" * 32, algorithm="HS256")
    with pytest.raises(TokenError):
        verifier.verify(forged, NOW)


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_arbitrary_strings_give_claims_or_token_error(text: str) -> None:
    """The verifier is total: TokenError or claims, nothing else."""
    try:
        hs_verifier().verify(text, NOW)
    except TokenError:
        pass


def test_cli_token_prints_a_token_the_gateway_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``telebridge token USER --ttl N --config PATH``."""
    (tmp_path / "c.toml").write_text(f'[auth]\ntoken_secret = "{SECRET}"\n')
    assert main(["token", "carol", "--ttl", "90", "--config", str(tmp_path / "c.toml")]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol" and claims["exp"] - claims["iat"] == 90


def test_cli_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``telebridge check-config PATH`` exits 0, or 1 with the message naming the key."""
    good = tmp_path / "good.toml"
    good.write_text(f'[auth]\ntoken_secret = "{SECRET}"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[auth]\ntoken_secret = "{SECRET}"\n[sip]\nt2 = "x"\n')
    assert main(["check-config", str(good)]) == 0
    assert main(["check-config", str(bad)]) == 1
    assert "sip.t2" in capsys.readouterr().err


def test_console_script_runs_as_installed() -> None:
    """The installed ``telebridge`` entry point answers and reports errors in one line."""
    script = Path(sys.executable).parent / "telebridge"
    result = subprocess.run([str(script), "check-config", "/nonexistent.toml"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "cannot read the file" in result.stderr
