"""Answering a 401/407 challenge by sending the request again (RFC 3261 §22.2, §22.3).

The retried request is the same request with the credentials added, the
next CSeq and a new Via branch: it is a new transaction in the same
dialog-forming sequence (same Call-ID and From tag), as §8.1.3.5 asks.

A challenge is answered once. A second challenge to the answered request
means the credentials are wrong, unless it says ``stale=true`` (the nonce
expired, the password was fine), which earns one more try.
"""

from __future__ import annotations

import re

from telebridge.sip.auth import AuthError, DigestClient, parse_auth_header
from telebridge.sip.message import Request, Response
from telebridge.sip.transaction_layer import new_branch

CHALLENGE_HEADERS = {401: ("WWW-Authenticate", "Authorization"), 407: ("Proxy-Authenticate", "Proxy-Authorization")}
_BRANCH = re.compile(r"(;\s*branch=)[^;,\s]+", re.IGNORECASE)


class ChallengeAnswerer:
    """Answers the challenges to one request sequence with one user's credentials."""

    def __init__(self, client: DigestClient) -> None:
        self.client = client
        self._answered = 0

    def retry(self, request: Request, response: Response) -> Request | None:
        """The request again with credentials, or ``None`` when it must not be retried."""
        names = CHALLENGE_HEADERS.get(response.status)
        if names is None:
            return None
        challenge_header, credentials_header = names
        challenges = response.headers.get_all(challenge_header)
        if self._answered and not any(_is_stale(c) for c in challenges):
            return None  # the credentials we sent were refused
        if self._answered >= 2:
            return None
        try:
            credentials = self.client.authorization(challenges, request.method, request.uri)
        except AuthError:
            return None
        self._answered += 1
        retry = next_in_sequence(request)
        retry.headers.set(credentials_header, credentials)
        return retry


def next_in_sequence(request: Request) -> Request:
    """``request`` again as a new transaction: the next CSeq and a new Via branch (§8.1.3.5)."""
    retry = request.copy()
    number, method = request.cseq
    retry.headers.set("CSeq", f"{number + 1} {method}")
    # Only our own Via is on a request we originate: its branch names the new transaction.
    via = retry.headers.get("Via") or ""
    retry.headers.set("Via", _BRANCH.sub(lambda m: m.group(1) + new_branch(), via, count=1))
    return retry


def _is_stale(challenge: str) -> bool:
    try:
        return (parse_auth_header(challenge).get("stale") or "").lower() == "true"
    except AuthError:
        return False
