"""The media socket set: many UDP sockets read through one reactor descriptor."""

from __future__ import annotations

import select
import socket
from typing import Any, Generator

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs

from telebridge.media.udp_sockets import UdpSocketSet


class Readers:
    """The two IReactorFDSet calls the set makes, recorded: tests call doRead themselves."""

    def __init__(self) -> None:
        self.readers: list[object] = []

    def addReader(self, reader: object) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.remove(reader)


@pytest.fixture
def sender() -> Generator[socket.socket, None, None]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def _wait_readable(sock: socket.socket) -> None:
    """Loopback delivers within sendto, but an ICMP error may trail it a little."""
    assert select.select([sock], [], [sock], 2.0) != ([], [], [])


@pytest_twisted.inlineCallbacks
def test_a_datagram_reaches_its_handler_through_the_reactor(sender: socket.socket) -> Generator[Any, Any, None]:
    sockets = UdpSocketSet(reactor)  # type: ignore[arg-type]
    got: defer.Deferred[tuple[bytes, tuple[str, int]]] = defer.Deferred()
    sock = sockets.open("127.0.0.1", 0, lambda data, source: got.callback((data, source)))
    try:
        sender.sendto(b"rtp", sock.getsockname())
        data, source = yield got
        assert (data, source) == (b"rtp", sender.getsockname())
    finally:
        sockets.close(sock)
    assert sockets not in reactor.getReaders()  # type: ignore[attr-defined]


def test_ipv6_sources_come_as_host_and_port() -> None:
    """Over ::1 (every loopback CI runs on has it: a machine without fails, it does not skip)."""
    sockets, got = UdpSocketSet(Readers()), []  # type: ignore[arg-type]
    sock = sockets.open("::1", 0, lambda data, source: got.append((data, source)))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
        sender.bind(("::1", 0))
        sender.sendto(b"rtp", sock.getsockname())
        _wait_readable(sock)
        sockets.doRead()
        assert got == [(b"rtp", ("::1", sender.getsockname()[1]))]
    sockets.close(sock)


def test_every_ready_socket_is_served_in_one_wake_up(sender: socket.socket) -> None:
    readers = Readers()
    sockets, got = UdpSocketSet(readers), []  # type: ignore[arg-type]
    opened = [sockets.open("127.0.0.1", 0, lambda data, source, i=i: got.append((i, data))) for i in range(40)]
    assert readers.readers == [sockets]  # one descriptor for all of them
    for i, sock in enumerate(opened):
        sender.sendto(b"%d" % i, sock.getsockname())
    _wait_readable(opened[-1])
    sockets.doRead()
    assert sorted(got) == [(i, b"%d" % i) for i in range(40)]
    for sock in opened:
        sockets.close(sock)
    assert readers.readers == [] and len(sockets) == 0


def test_a_wake_up_reads_at_most_a_batch_and_the_rest_stays_ready(sender: socket.socket) -> None:
    sockets, got = UdpSocketSet(Readers(), batch=3), []  # type: ignore[arg-type]
    sock = sockets.open("127.0.0.1", 0, lambda data, source: got.append(data))
    others = [sockets.open("127.0.0.1", 0, lambda data, source: got.append(data)) for _ in range(4)]
    for i in range(3):
        sender.sendto(b"a%d" % i, sock.getsockname())
    for other in others:
        sender.sendto(b"b", other.getsockname())
    _wait_readable(others[-1])
    sockets.doRead()
    assert len(got) == 3
    for _ in range(4):
        sockets.doRead()
    # Arrival order on each socket is kept, and nothing is lost.
    assert [d for d in got if d.startswith(b"a")] == [b"a0", b"a1", b"a2"] and got.count(b"b") == 4
    for s in [sock, *others]:
        sockets.close(s)


def test_closing_releases_the_port() -> None:
    sockets = UdpSocketSet(Readers())  # type: ignore[arg-type]
    sock = sockets.open("127.0.0.1", 0, lambda data, source: None)
    port = sock.getsockname()[1]
    with pytest.raises(OSError):
        sockets.open("127.0.0.1", port, lambda data, source: None)
    sockets.close(sock)
    sockets.close(sock)  # idempotent
    again = sockets.open("127.0.0.1", port, lambda data, source: None)
    assert again.getsockname()[1] == port
    sockets.close(again)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.bind(("127.0.0.1", port))


def test_an_icmp_error_is_skipped_and_the_socket_keeps_working(sender: socket.socket) -> None:
    sockets, got = UdpSocketSet(Readers()), []  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        closed_address = gone.getsockname()
    refused = sockets.open("127.0.0.1", 0, lambda data, source: got.append(("refused", data)))
    other = sockets.open("127.0.0.1", 0, lambda data, source: got.append(("other", data)))
    # A connected UDP socket gets the port-unreachable back as ECONNREFUSED on its next read.
    refused.connect(closed_address)
    refused.send(b"to nobody")
    _wait_readable(refused)
    sender.sendto(b"hello", other.getsockname())
    sockets.doRead()
    assert got == [("other", b"hello")]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
        back.bind(closed_address)
        back.sendto(b"late", refused.getsockname())
        _wait_readable(refused)
        sockets.doRead()
    assert got[-1] == ("refused", b"late")
    sockets.close(refused)
    sockets.close(other)


def test_a_failing_handler_is_logged_once_and_others_are_still_served(sender: socket.socket) -> None:
    sockets, got = UdpSocketSet(Readers()), []  # type: ignore[arg-type]

    def broken(data: bytes, source: tuple[str, int]) -> None:
        raise ValueError("bad packet")

    bad = sockets.open("127.0.0.1", 0, broken)
    good = sockets.open("127.0.0.1", 0, lambda data, source: got.append(data))
    with capturedLogs() as events:
        for round in range(3):
            sender.sendto(b"x", bad.getsockname())
            sender.sendto(b"%d" % round, good.getsockname())
            _wait_readable(good)
            sockets.doRead()
    assert got == [b"0", b"1", b"2"]
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["log_failure"].check(ValueError)
    sockets.close(bad)
    sockets.close(good)
