"""Media UDP sockets behind one reactor reader.

A relayed call has two or three sockets, each getting 50 packets a second,
so a socket rarely has more than one datagram waiting when it becomes
readable. Registered with the reactor one by one, every datagram would pay
the reactor's whole per-descriptor dispatch (its event loop turn, logging
context, ``doRead`` reading until ``EAGAIN``). Here all media sockets sit in
one ``epoll`` object of our own, and only that object's descriptor is
registered with the reactor: one wake-up serves every socket that is ready,
with one ``recvfrom`` each, straight into its handler.
"""

from __future__ import annotations

import select
import socket
from typing import Callable

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger
from twisted.python.failure import Failure

Handler = Callable[[bytes, tuple[str, int]], None]

# Larger than any datagram a media peer sends (DTLS flights are cut to the path MTU).
RECEIVE_SIZE = 8192
# At most this many datagrams per wake-up, so that signalling and timers get
# their turn under overload; what is left stays ready for the next one.
BATCH = 256

log = Logger()


class UdpSocketSet:
    """UDP sockets read through one descriptor registered with ``reactor``.

    Each socket is read once per wake-up, not until ``EAGAIN``: the inner
    ``epoll`` is level-triggered, so a socket with more waiting is simply
    reported again, and the failing ``recvfrom`` (a system call plus an
    exception, per packet at this rate) is saved.
    """

    def __init__(self, reactor: IReactorFDSet, batch: int = BATCH) -> None:
        self.reactor = reactor
        self.batch = batch
        self._poller = select.epoll()
        # fd -> (the socket's recvfrom, its handler): all the hot loop looks up.
        self._readers: dict[int, tuple[Callable[[int], tuple[bytes, tuple[str, int]]], Handler]] = {}
        self._sockets: dict[int, socket.socket] = {}
        self._failed: set[int] = set()
        self._reading = False

    def open(self, interface: str, port: int, handler: Handler) -> socket.socket:
        """A non-blocking UDP socket bound to (``interface``, ``port``) whose datagrams
        go to ``handler(data, (host, port))``; raises ``OSError`` when the port is taken."""
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((interface, port))
        except BaseException:
            sock.close()
            raise
        if family == socket.AF_INET6:
            # IPv6 sources come as (host, port, flowinfo, scope_id); the legs compare (host, port).
            handler = _two_tuple(handler)
        fd = sock.fileno()
        self._poller.register(fd, select.EPOLLIN)
        self._readers[fd] = (sock.recvfrom, handler)
        self._sockets[fd] = sock
        if not self._reading:
            self._reading = True
            self.reactor.addReader(self)  # type: ignore[arg-type]
        return sock

    def close(self, sock: socket.socket) -> None:
        """Stop reading ``sock`` and close it, which frees its port at once; idempotent."""
        fd = sock.fileno()
        if self._sockets.get(fd) is sock:
            self._poller.unregister(fd)
            del self._readers[fd], self._sockets[fd]
            self._failed.discard(fd)
        sock.close()
        if not self._sockets and self._reading:
            self._reading = False
            self.reactor.removeReader(self)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._sockets)

    # IReadDescriptor, for the reactor.

    def fileno(self) -> int:
        return self._poller.fileno()

    def logPrefix(self) -> str:
        return "media"

    def doRead(self) -> None:
        readers = self._readers
        for fd, _ in self._poller.poll(0, self.batch):
            entry = readers.get(fd)
            if entry is None:
                continue  # closed by a handler earlier in this wake-up
            receive, handler = entry
            try:
                data, source = receive(RECEIVE_SIZE)
            except OSError:
                # Nothing there after all, or a pending ICMP error (ConnectionRefusedError)
                # that this read has cleared: UDP loss either way.
                continue
            try:
                handler(data, source)
            except Exception:
                self._handler_failed(fd)

    def _handler_failed(self, fd: int) -> None:
        # Once per socket: a handler that fails on every packet would write 50 tracebacks a second.
        if fd not in self._failed:
            self._failed.add(fd)
            log.failure("media socket handler failed (further failures on this socket are not logged)", Failure())

    def connectionLost(self, reason: Failure) -> None:
        # The reactor dropped us (it is shutting down): open() registers again if needed.
        self._reading = False


def _two_tuple(handler: Handler) -> Handler:
    def received(data: bytes, source: tuple[str, int]) -> None:
        handler(data, source[:2])

    return received
