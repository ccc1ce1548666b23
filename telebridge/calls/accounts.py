"""Where a browser user's PBX credentials come from (PBX mode).

Rules of operation:

* ``[accounts.USER]`` in the configuration wins.
* Otherwise, with ``[upstream] accounts_url``, the app server is asked:
  ``GET URL?user=USER`` with ``Authorization: Bearer <accounts_secret>``
  (so it knows the caller is telebridge). It answers 200 with JSON
  ``{"username": "...", "password": "..."}``, or 404 when the user has no
  PBX account. Answers are kept ``accounts_cache`` seconds, so a busy tab
  does not ask on every REGISTER refresh and call.
* Anything else (no answer within the timeout, another status, a body
  that is not that JSON) is :class:`AccountsUnavailable`: the browser is
  told the service is unavailable (503), never that it has no account.
* Credentials are only ever used to answer the PBX's challenges; they are
  not logged and never reach a browser.
"""

from __future__ import annotations

import json
from typing import Callable
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from telebridge.config import AccountConfig

# (status, body) of an HTTP GET of the URL with the headers given.
Fetch = Callable[[str, dict[str, str]], "defer.Deferred[tuple[int, bytes]]"]
MAX_BODY = 4096


class AccountsUnavailable(Exception):
    """The app server could not say whether the user has an account."""


class AccountSource:
    """Each user's PBX credentials: configured, or from the app server (cached)."""

    def __init__(
        self,
        configured: dict[str, AccountConfig],
        clock: IReactorTime,
        url: str | None = None,
        secret: str | None = None,
        fetch: Fetch | None = None,
        cache_seconds: float = 300.0,
    ) -> None:
        self.configured = configured
        self.clock = clock
        self.url = url
        self.secret = secret
        self.fetch = fetch
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, AccountConfig | None]] = {}

    def lookup(self, user: str) -> defer.Deferred[AccountConfig | None]:
        """The user's account, ``None`` if it has none; fails with :class:`AccountsUnavailable`."""
        if user in self.configured:
            return defer.succeed(self.configured[user])
        if self.url is None or self.fetch is None:
            return defer.succeed(None)
        now = self.clock.seconds()
        cached = self._cache.get(user)
        if cached is not None and cached[0] > now:
            return defer.succeed(cached[1])
        headers = {"Accept": "application/json"}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        separator = "&" if "?" in self.url else "?"
        asking = self.fetch(f"{self.url}{separator}user={quote(user, safe='')}", headers)

        def answered(result: tuple[int, bytes]) -> AccountConfig | None:
            account = _account_from(user, *result)
            self._cache[user] = (self.clock.seconds() + self.cache_seconds, account)
            self._forget_expired()
            return account

        def failed(failure: object) -> None:
            if isinstance(getattr(failure, "value", None), AccountsUnavailable):
                raise failure.value  # type: ignore[attr-defined]
            raise AccountsUnavailable(f"the account service did not answer: {getattr(failure, 'value', failure)}")

        asking.addCallbacks(answered, failed)
        return asking

    def _forget_expired(self) -> None:
        now = self.clock.seconds()
        for user in [u for u, (until, _) in self._cache.items() if until <= now]:
            del self._cache[user]


def _account_from(user: str, status: int, body: bytes) -> AccountConfig | None:
    if status == 404:
        return None
    if status != 200:
        raise AccountsUnavailable(f"the account service answered HTTP {status}")
    try:
        data = json.loads(body[:MAX_BODY].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise AccountsUnavailable("the account service's answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("password"), str) or not data["password"]:
        raise AccountsUnavailable("the account service's answer has no password")
    username = data.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise AccountsUnavailable("the account service's username is not a string")
    return AccountConfig(username or user, data["password"])


def http_fetch(reactor: IReactorTime, timeout: float) -> Fetch:
    """A :data:`Fetch` over Twisted's HTTP client, bounded to ``timeout`` seconds."""
    agent = Agent(reactor, connectTimeout=timeout)  # type: ignore[arg-type]

    def fetch(url: str, headers: dict[str, str]) -> defer.Deferred[tuple[int, bytes]]:
        asking = agent.request(b"GET", url.encode(), Headers({k: [v] for k, v in headers.items()}))

        def read(response: IResponse) -> defer.Deferred[tuple[int, bytes]]:
            reading: defer.Deferred[bytes] = readBody(response)
            return reading.addCallback(lambda body: (response.code, body))

        asking.addCallback(read)
        asking.addTimeout(timeout, reactor)  # type: ignore[arg-type]
        return asking

    return fetch
