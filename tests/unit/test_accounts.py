"""PBX credentials from the configuration or the app server's callback."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from telebridge.calls.accounts import AccountSource, AccountsUnavailable
from telebridge.config import AccountConfig


class AppServer:
    """Answers like an app server would; records what it was asked."""

    def __init__(self, status: int = 200, body: bytes = b"") -> None:
        self.status, self.body = status, body
        self.asked: list[tuple[str, dict[str, str]]] = []

    def fetch(self, url: str, headers: dict[str, str]) -> defer.Deferred[tuple[int, bytes]]:
        self.asked.append((url, headers))
        return defer.succeed((self.status, self.body))


def result_of(d: defer.Deferred) -> object:
    results: list[object] = []
    d.addBoth(results.append)
    return results[0]


def test_configured_accounts_win_and_the_app_server_is_asked_with_its_secret_then_cached() -> None:
    clock = Clock()
    app = AppServer(body=json.dumps({"username": "1002", "password": "pw"}).encode())
    source = AccountSource({"alice": AccountConfig("1001", "a")}, clock, "http://app/acct?x=1", "s3cret", app.fetch, 60)
    assert result_of(source.lookup("alice")) == AccountConfig("1001", "a")
    assert result_of(source.lookup("bob")) == AccountConfig("1002", "pw")
    assert app.asked == [("http://app/acct?x=1&user=bob", {"Accept": "application/json", "Authorization": "Bearer s3cret"})]
    source.lookup("bob")
    assert len(app.asked) == 1  # cached
    clock.advance(61)
    source.lookup("bob")
    assert len(app.asked) == 2


def test_404_means_no_account_and_a_missing_username_defaults_to_the_user() -> None:
    clock = Clock()
    assert result_of(AccountSource({}, clock, "http://app", None, AppServer(404).fetch).lookup("carol")) is None
    app = AppServer(body=b'{"password": "pw"}')
    assert result_of(AccountSource({}, clock, "http://app", None, app.fetch).lookup("carol")) == AccountConfig("carol", "pw")
    assert "Authorization" not in app.asked[0][1]
    assert result_of(AccountSource({}, clock).lookup("carol")) is None  # no callback configured


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b""), (200, b"not json"), (200, b"[1]"), (200, b'{"password": ""}'), (200, b'{"password": "p", "username": 7}'), (200, b"\xff")],
)
def test_anything_else_is_unavailable_not_no_account(status: int, body: bytes) -> None:
    failure = result_of(AccountSource({}, Clock(), "http://app", None, AppServer(status, body).fetch).lookup("dave"))
    assert isinstance(getattr(failure, "value", None), AccountsUnavailable), failure


def test_a_failed_request_is_unavailable_and_not_cached() -> None:
    calls: list[str] = []

    def broken(url: str, headers: dict[str, str]) -> defer.Deferred[tuple[int, bytes]]:
        calls.append(url)
        return defer.fail(ConnectionRefusedError("refused"))

    source = AccountSource({}, Clock(), "http://app", None, broken)
    for _ in range(2):
        failure = result_of(source.lookup("erin"))
        assert isinstance(getattr(failure, "value", None), AccountsUnavailable)
    assert len(calls) == 2
