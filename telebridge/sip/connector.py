"""Outgoing SIP connections over TCP and TLS, reused per destination.

RFC 3261 §18.1.1: a client sends requests over a connection to the
destination, reusing an open one (RFC 5923 style reuse, keyed by
transport, address and port, and for TLS the name checked in the server's
certificate). TLS verifies the server certificate against that name with
service-identity when the configuration asks for it; the Deferred for a
TLS flow fires only once the handshake (and so the check) has passed.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHandshakeListener, IReactorSSL, IReactorTCP
from twisted.python.failure import Failure
from zope.interface import implementer

from telebridge.metrics import Counters
from telebridge.sip.transport import Flow, MessageSink, SipStreamProtocol
from telebridge.tls import client_context_factory

ConnectionKey = tuple[str, str, int, str]


@implementer(IHandshakeListener)
class _OutgoingStream(SipStreamProtocol):
    """A client-side stream flow that reports when it is usable."""

    ready: defer.Deferred[Flow]

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.transport_name == "TCP":
            self.ready.callback(self)

    def handshakeCompleted(self) -> None:
        self.ready.callback(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.ready.called:
            self.ready.errback(reason)
        super().connectionLost(reason)


class _OneShotFactory(protocol.ClientFactory):
    def __init__(self, build: protocol.Protocol) -> None:
        self.built = build

    def buildProtocol(self, addr: object) -> protocol.Protocol:
        return self.built

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        ready = getattr(self.built, "ready")
        if not ready.called:
            ready.errback(reason)


class SipConnector:
    """Opens and reuses outgoing TCP/TLS flows."""

    def __init__(
        self,
        reactor: IReactorTCP,
        sink: MessageSink,
        counters: Counters,
        max_size: int,
        verify_tls: bool,
        ca_file: Path | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.reactor = reactor
        self.sink = sink
        self.counters = counters
        self.max_size = max_size
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self.connect_timeout = connect_timeout
        self._flows: dict[ConnectionKey, Flow] = {}
        self._waiting: dict[ConnectionKey, list[defer.Deferred[Flow]]] = {}

    def __len__(self) -> int:
        return len(self._flows) + len(self._waiting)

    def connect(self, transport: str, host: str, port: int, server_name: str | None = None) -> defer.Deferred[Flow]:
        """A flow to (transport, host, port), new or reused; fails if TLS verification does."""
        transport = transport.upper()
        if transport not in ("TCP", "TLS"):
            raise ValueError(f"cannot open a {transport} connection")
        name = server_name or host
        key = (transport, host, port, name)
        if key in self._flows:
            return defer.succeed(self._flows[key])
        waiter: defer.Deferred[Flow] = defer.Deferred()
        if key in self._waiting:
            self._waiting[key].append(waiter)
            return waiter
        self._waiting[key] = [waiter]
        stream = _OutgoingStream(_Forgetting(self, key), self.counters, transport, self.max_size)
        stream.ready = defer.Deferred()
        stream.ready.addCallbacks(self._connected, self._failed, callbackArgs=(key,), errbackArgs=(key,))
        factory = _OneShotFactory(stream)
        if transport == "TLS":
            context = client_context_factory(name, self.verify_tls, self.ca_file)
            reactor_ssl: IReactorSSL = self.reactor  # type: ignore[assignment]
            reactor_ssl.connectSSL(host, port, factory, context, timeout=self.connect_timeout)  # type: ignore[arg-type]
        else:
            self.reactor.connectTCP(host, port, factory, timeout=self.connect_timeout)
        return waiter

    def _connected(self, flow: Flow, key: ConnectionKey) -> None:
        self._flows[key] = flow
        for waiter in self._waiting.pop(key, []):
            waiter.callback(flow)

    def _failed(self, reason: Failure, key: ConnectionKey) -> None:
        self.counters.inc("sip_connect_failures_total", transport=key[0])
        for waiter in self._waiting.pop(key, []):
            waiter.errback(reason)

    def _forget(self, key: ConnectionKey, flow: Flow) -> None:
        if self._flows.get(key) is flow:
            del self._flows[key]


class _Forgetting:
    """The sink for an outgoing flow: forwards, and forgets the flow when it closes."""

    def __init__(self, connector: SipConnector, key: ConnectionKey) -> None:
        self.connector = connector
        self.key = key

    def message_received(self, message: object, flow: Flow) -> None:
        self.connector.sink.message_received(message, flow)  # type: ignore[arg-type]

    def flow_closed(self, flow: Flow) -> None:
        self.connector._forget(self.key, flow)
        self.connector.sink.flow_closed(flow)

