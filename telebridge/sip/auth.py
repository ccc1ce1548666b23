"""SIP digest authentication, client and server (RFC 3261 §22, RFC 7616, RFC 8760).

Rules of operation:

* Works on header *values* (what follows ``WWW-Authenticate:`` and
  ``Authorization:``), so it needs no message object.
* Algorithms MD5 and SHA-256 (and their ``-sess`` forms); ``qop=auth`` or no
  qop (RFC 2617 compatibility). ``auth-int`` is refused.
* Server nonces are stateless: ``<timestamp>:<random>:<HMAC>`` under a
  per-process secret, so a nonce cannot be forged and expires after
  ``nonce_lifetime`` without any table. An expired nonce with an otherwise
  correct response is STALE: the client is re-challenged with
  ``stale=true`` and answers without asking its user again.
* Every comparison of a secret value uses ``hmac.compare_digest``.
* Malformed input raises :class:`AuthError` (parser) or gives FAILED
  (verifier); never another exception.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

from telebridge.sip.errors import SipParseError
from telebridge.sip.uri import TOKEN_CHARS, quote, read_quoted

HASHES: dict[str, Callable[[bytes], "hashlib._Hash"]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}
MAX_HEADER = 4096


class AuthError(Exception):
    """An Authorization or WWW-Authenticate value that cannot be used."""


@dataclass(frozen=True, slots=True)
class AuthParams:
    """A parsed challenge or credentials: the scheme and its parameters.

    For ``Bearer`` the token is in ``token`` and ``params`` is empty.
    """

    scheme: str
    params: dict[str, str]
    token: str | None = None

    def get(self, name: str) -> str | None:
        """A parameter by case-insensitive name."""
        return self.params.get(name.lower())


def parse_auth_header(value: str) -> AuthParams:
    """Parse ``Digest a=b, c="d"`` or ``Bearer <token>`` (RFC 7235 §2.1)."""
    if len(value) > MAX_HEADER:
        raise AuthError("header too long")
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if not scheme or not all(c in TOKEN_CHARS for c in scheme):
        raise AuthError("missing or bad auth scheme")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        if not rest or " " in rest or "," in rest:
            raise AuthError("Bearer needs exactly one token")
        return AuthParams("Bearer", {}, rest)
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            raise AuthError(f"parameter without '=' in {scheme}")
        name = rest[i:eq].strip().lower()
        if not name or not all(c in TOKEN_CHARS for c in name):
            raise AuthError(f"bad parameter name {name[:20]!r}")
        j = eq + 1
        while j < len(rest) and rest[j] in " \t":
            j += 1
        if j < len(rest) and rest[j] == '"':
            try:
                param_value, j = read_quoted(rest, j)
            except SipParseError as e:
                raise AuthError(f"bad quoted value for {name}: {e}") from None
        else:
            end = rest.find(",", j)
            end = len(rest) if end < 0 else end
            param_value = rest[j:end].strip()
            if not param_value or not all(c in TOKEN_CHARS or c in "/:=" for c in param_value):
                raise AuthError(f"bad value for {name}")
            j = end
        if name in params:
            raise AuthError(f"duplicate parameter {name}")
        params[name] = param_value
        while j < len(rest) and rest[j] in " \t":
            j += 1
        if j < len(rest):
            if rest[j] != ",":
                raise AuthError(f"junk after {name}")
            j += 1
        i = j
    if not params:
        raise AuthError(f"{scheme} without parameters")
    return AuthParams(scheme, params)


def _hash(algorithm: str, text: str) -> str:
    base = algorithm[:-5] if algorithm.endswith("-sess") else algorithm
    return HASHES[base](text.encode("utf-8")).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 without qop)."""
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


def _algorithm_of(params: AuthParams) -> str:
    algorithm = (params.get("algorithm") or "MD5").upper()
    base = algorithm[:-5] if algorithm.endswith("-SESS") else algorithm
    if base not in HASHES:
        raise AuthError(f"unsupported algorithm {algorithm[:20]}")
    return base + ("-sess" if algorithm.endswith("-SESS") else "")


class DigestClient:
    """Answers challenges for one user; keeps the nonce count (RFC 7616 §3.4)."""

    def __init__(self, username: str, password: str, random: Callable[[int], str] = secrets.token_hex) -> None:
        self.username = username
        self.password = password
        self.random = random
        self._counts: dict[str, int] = {}

    def authorization(self, challenges: list[str], method: str, uri: str) -> str:
        """An Authorization value for the best challenge (SHA-256 before MD5, RFC 8760 §2.4)."""
        usable = []
        for value in challenges:
            try:
                params = parse_auth_header(value)
                if params.scheme.lower() == "digest" and params.get("nonce") and params.get("realm") is not None:
                    usable.append((_algorithm_of(params), params))
            except AuthError:
                continue
        if not usable:
            raise AuthError("no usable Digest challenge")
        usable.sort(key=lambda item: 0 if item[0].startswith("SHA-256") else 1)
        algorithm, params = usable[0]
        return self.answer(params, algorithm, method, uri)

    def answer(self, challenge: AuthParams, algorithm: str, method: str, uri: str) -> str:
        """Credentials for one parsed challenge."""
        realm, nonce = challenge.get("realm") or "", challenge.get("nonce") or ""
        offered = [q.strip() for q in (challenge.get("qop") or "").split(",") if q.strip()]
        if offered and "auth" not in offered:
            raise AuthError("only qop=auth is supported")
        qop = "auth" if offered else None
        nc = cnonce = None
        if qop:
            count = self._counts.get(nonce, 0) + 1
            self._counts = {nonce: count}  # a new nonce resets the count
            nc, cnonce = f"{count:08x}", self.random(16)
        response = digest_response(
            algorithm=algorithm, username=self.username, realm=realm, password=self.password,
            method=method, uri=uri, nonce=nonce, qop=qop, nc=nc, cnonce=cnonce,
        )
        parts = [
            f"username={quote(self.username)}",
            f"realm={quote(realm)}",
            f"nonce={quote(nonce)}",
            f"uri={quote(uri)}",
            f"response={quote(response)}",
            f"algorithm={algorithm}",
        ]
        if qop:
            parts += [f"qop={qop}", f"nc={nc}", f"cnonce={quote(cnonce or '')}"]
        if challenge.get("opaque") is not None:
            parts.append(f"opaque={quote(challenge.get('opaque') or '')}")
        return "Digest " + ", ".join(parts)


class AuthOutcome(enum.Enum):
    """What a server made of a set of credentials."""

    OK = "ok"
    STALE = "stale"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome, with the username that was claimed (if any) and why."""

    outcome: AuthOutcome
    username: str | None = None
    reason: str = ""


class DigestServer:
    """Challenges and checks digest credentials with stateless nonces."""

    def __init__(
        self,
        realm: str,
        nonce_lifetime: float = 300.0,
        secret: bytes | None = None,
        random: Callable[[int], str] = secrets.token_hex,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self.secret = secret or secrets.token_bytes(32)
        self.random = random
        self.algorithms = algorithms

    def _mac(self, body: str) -> str:
        return hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()[:32]

    def new_nonce(self, now: float) -> str:
        """``time:random:mac``; the MAC stops forgery, the time bounds its life."""
        body = f"{int(now)}:{self.random(8)}"
        return f"{body}:{self._mac(body)}"

    def challenge(self, now: float, stale: bool = False) -> list[str]:
        """One WWW-Authenticate value per algorithm, preferred first (RFC 8760 §2.4)."""
        nonce = self.new_nonce(now)
        out = []
        for algorithm in self.algorithms:
            value = f"Digest realm={quote(self.realm)}, nonce={quote(nonce)}, algorithm={algorithm}, qop=\"auth\""
            if stale:
                value += ", stale=true"
            out.append(value)
        return out

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since the nonce was made, or ``None`` if it is not ours."""
        body, _, mac = nonce.rpartition(":")
        stamp = body.partition(":")[0]
        if not stamp.isdigit() or not hmac.compare_digest(mac, self._mac(body)):
            return None
        return now - int(stamp)

    def verify(self, value: str, method: str, passwords: Callable[[str], str | None], now: float) -> AuthResult:
        """Check an Authorization value for a request with ``method``."""
        try:
            params = parse_auth_header(value)
            if params.scheme.lower() != "digest":
                return AuthResult(AuthOutcome.FAILED, reason="not Digest")
            algorithm = _algorithm_of(params)
        except AuthError as e:
            return AuthResult(AuthOutcome.FAILED, reason=str(e))
        username, nonce, uri, response = (params.get(k) for k in ("username", "nonce", "uri", "response"))
        if not (username and nonce and uri and response):
            return AuthResult(AuthOutcome.FAILED, username, "missing parameter")
        if params.get("realm") != self.realm:
            return AuthResult(AuthOutcome.FAILED, username, "wrong realm")
        if algorithm.split("-sess")[0] not in self.algorithms:
            return AuthResult(AuthOutcome.FAILED, username, "algorithm not offered")
        qop = params.get("qop")
        if qop not in (None, "auth"):
            return AuthResult(AuthOutcome.FAILED, username, "unsupported qop")
        nc, cnonce = params.get("nc"), params.get("cnonce")
        if qop and not (nc and cnonce):
            return AuthResult(AuthOutcome.FAILED, username, "qop without nc/cnonce")
        age = self._nonce_age(nonce, now)
        if age is None or age < -5:
            return AuthResult(AuthOutcome.FAILED, username, "nonce not issued here")
        password = passwords(username)
        if password is None:
            return AuthResult(AuthOutcome.FAILED, username, "unknown user")
        expected = digest_response(
            algorithm=algorithm, username=username, realm=self.realm, password=password,
            method=method, uri=uri, nonce=nonce, qop=qop, nc=nc, cnonce=cnonce,
        )
        if not hmac.compare_digest(expected.encode(), response.lower().encode()):
            return AuthResult(AuthOutcome.FAILED, username, "wrong response")
        if age > self.nonce_lifetime:
            return AuthResult(AuthOutcome.STALE, username, "nonce expired")
        return AuthResult(AuthOutcome.OK, username)
