"""The network rule, checked: tests run where only ``lo`` exists."""

from __future__ import annotations

import socket

from tests.netns import interfaces


def test_session_sees_only_loopback(loopback_only: None) -> None:
    """Browsers and aiortc gather on every interface: here there is only ``lo``."""
    assert interfaces() == ["lo"]


def test_loopback_works_inside_the_namespace(loopback_only: None) -> None:
    """``lo`` is up, so peers on 127.0.0.1 reach each other."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.sendto(b"ping", a.getsockname())
        a.settimeout(2)
        assert a.recv(4) == b"ping"
