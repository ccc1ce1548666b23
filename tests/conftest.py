"""Test-session set-up shared by every layer of tests."""

from __future__ import annotations

import pytest

from tests.netns import enter_loopback_only_namespace, interfaces

_NETNS_PROBLEM = enter_loopback_only_namespace()


@pytest.fixture(scope="session")
def loopback_only() -> None:
    """Fails a test that needs the loopback-only namespace when it could not be made."""
    if _NETNS_PROBLEM is not None:
        raise AssertionError(_NETNS_PROBLEM)
    assert interfaces() == ["lo"], interfaces()

