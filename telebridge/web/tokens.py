"""Browser tokens: JWTs with ``sub`` (the SIP user) and ``exp``.

HS256 with a shared secret, or RS256/ES256 checked against a configured
public key so that an app server need not share a secret. Time is passed
in; every failure is one :class:`TokenError` with a readable reason.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization

from telebridge.sip.uri import is_token

if TYPE_CHECKING:
    from telebridge.config import Config

SECRET_FILE = "token_secret"
MAX_TOKEN_LENGTH = 8192


class TokenError(Exception):
    """A token that does not authenticate anybody."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says."""

    sub: str
    exp: int


def load_public_key(path: Path) -> Any:
    """Load a PEM public key (RSA or EC P-256) for RS256/ES256."""
    try:
        return serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TokenError(f"{str(path)!r} is not a PEM public key ({e})") from None


class TokenVerifier:
    """Checks tokens against the configured secret and/or public key."""

    def __init__(self, secret: str | None, public_key: Any | None, algorithms: tuple[str, ...]) -> None:
        self.keys: dict[str, Any] = {}
        for algorithm in algorithms:
            key = secret if algorithm == "HS256" else public_key
            if key is not None:
                self.keys[algorithm] = key

    @classmethod
    def from_config(cls, config: Config, secret: str | None) -> TokenVerifier:
        """Built from ``[auth]`` plus the resolved HS256 secret."""
        public_key = load_public_key(config.auth.token_public_key) if config.auth.token_public_key else None
        algorithms = config.auth.token_algorithms
        if config.auth.token_secret is None and secret is not None and "HS256" not in algorithms:
            # The dev-token secret from the state directory signs HS256.
            algorithms += ("HS256",)
        return cls(secret, public_key, algorithms)

    def verify(self, token: str, now: float) -> Claims:
        """The claims of a valid token, or :class:`TokenError`."""
        if not token:
            raise TokenError("no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenError(f"malformed token: {e}") from None
        algorithm = header.get("alg")
        # Only algorithms we hold a key for: this is what stops "alg: none"
        # and HS256-with-the-public-key confusion.
        if not isinstance(algorithm, str) or algorithm not in self.keys:
            raise TokenError(f"algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                self.keys[algorithm],
                algorithms=[algorithm],
                # Time claims are checked below against ``now``, not the clock.
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as e:
            raise TokenError(f"invalid token: {e}") from None
        except (ValueError, TypeError) as e:
            raise TokenError(f"malformed token: {e}") from None
        sub, exp = claims.get("sub"), claims.get("exp")
        if not isinstance(sub, str) or not is_token(sub) or len(sub) > 64:
            raise TokenError("sub is not a SIP user name")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise TokenError("exp is not a number")
        if exp <= now:
            raise TokenError("token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now + 30:
            raise TokenError("token not valid yet")
        return Claims(sub=sub, exp=int(exp))


def mint_token(sub: str, ttl: int, key: Any, algorithm: str, now: float) -> str:
    """A token for ``sub`` valid for ``ttl`` seconds from ``now``."""
    return jwt.encode({"sub": sub, "exp": int(now) + ttl, "iat": int(now)}, key, algorithm=algorithm)


def resolve_token_secret(config: Config) -> str | None:
    """The HS256 secret: configured, or (dev tokens on) kept in the state dir.

    The embedded default has no config file to hold a secret, so one is made
    once and stored with mode 0600; ``telebridge token`` reads the same file.
    """
    if config.auth.token_secret:
        return config.auth.token_secret
    if not config.web.dev_tokens:
        return None
    path = config.state_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    config.state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
