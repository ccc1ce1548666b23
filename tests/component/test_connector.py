"""Outgoing SIP over TCP and TLS on loopback sockets, with certificate checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generator

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from telebridge.metrics import Counters
from telebridge.sip.connector import SipConnector
from telebridge.sip.message import parse_message
from telebridge.sip.transport import SipStreamFactory
from telebridge.tls import ensure_self_signed, server_context_factory
from tests.component.test_transport import OPTIONS, RecordingSink


def _listen(tmp_path: Path, transport: str) -> tuple[Any, RecordingSink, Path]:
    cert, key = ensure_self_signed(tmp_path)
    sink = RecordingSink()
    factory = SipStreamFactory(sink, Counters(), transport, 65536)
    if transport == "TLS":
        port = reactor.listenSSL(0, factory, server_context_factory(cert, key), interface="127.0.0.1")  # type: ignore[attr-defined]
    else:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    return port, sink, cert


def _wait_for(condition: Any) -> Generator[Any, Any, None]:
    for _ in range(200):
        if condition():
            return
        yield task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not met in 2 s")


@pytest_twisted.inlineCallbacks
def test_tls_flow_verifies_the_server_name_and_is_reused(tmp_path: Path) -> Generator[Any, Any, None]:
    """Issue 2 §5: verify the peer's certificate when configured; reuse the connection."""
    port, server_sink, cert = _listen(tmp_path, "TLS")
    address = port.getHost().port
    connector = SipConnector(reactor, RecordingSink(), Counters(), 65536, verify_tls=True, ca_file=cert)  # type: ignore[arg-type]
    try:
        flow = yield connector.connect("TLS", "127.0.0.1", address, server_name="localhost")
        flow.send(parse_message(OPTIONS))
        yield from _wait_for(lambda: server_sink.messages)
        assert server_sink.messages[0][0].method == "OPTIONS"  # type: ignore[union-attr]
        again = yield connector.connect("TLS", "127.0.0.1", address, server_name="localhost")
        assert again is flow and len(connector) == 1
        with pytest.raises(Exception):
            yield connector.connect("TLS", "127.0.0.1", address, server_name="wrong.example")
        assert len(connector) == 1
        flow.transport.loseConnection()
        yield from _wait_for(lambda: len(connector) == 0)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_tls_without_verification_accepts_any_name(tmp_path: Path) -> Generator[Any, Any, None]:
    """``verify_peer = false`` (the default) connects to a self-signed peer."""
    port, server_sink, _ = _listen(tmp_path, "TLS")
    connector = SipConnector(reactor, RecordingSink(), Counters(), 65536, verify_tls=False)  # type: ignore[arg-type]
    try:
        flow = yield connector.connect("TLS", "127.0.0.1", port.getHost().port, server_name="anything.example")
        flow.send(parse_message(OPTIONS))
        yield from _wait_for(lambda: server_sink.messages)
        flow.transport.loseConnection()
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_tcp_connection_refused_fails_and_leaves_nothing(tmp_path: Path) -> Generator[Any, Any, None]:
    """A dead destination errbacks; no flow is kept for it."""
    port, _, _ = _listen(tmp_path, "TCP")
    address = port.getHost().port
    yield port.stopListening()
    counters = Counters()
    connector = SipConnector(reactor, RecordingSink(), counters, 65536, verify_tls=False)  # type: ignore[arg-type]
    with pytest.raises(Exception):
        yield connector.connect("TCP", "127.0.0.1", address)
    assert len(connector) == 0 and counters.total("sip_connect_failures_total") == 1
