"""SIP over UDP, TCP and TLS: thin Twisted adapters (RFC 3261 §18).

They only move bytes: datagrams and stream bytes are parsed by the sans-I/O
core (:mod:`telebridge.sip.message`) and handed, with the :class:`Flow` they
arrived on, to a :class:`MessageSink`. Malformed input is answered or
dropped here, per DESIGN.md "Bad input": over a reliable transport a
malformed request gets a 400 whose reason phrase says what was wrong; over
UDP it gets a 400 only when the reply can be addressed, else it is dropped
and counted. A stream whose framing is lost is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from twisted.internet import protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure

from telebridge.metrics import Counters
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import (
    KeepAlive,
    Message,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from telebridge.sip.received import response_address, stamp_received

log = Logger()


class Flow(Protocol):
    """A path back to a peer (RFC 5626 §3: a "flow").

    UDP flows are (socket, address) pairs; a TCP, TLS or WebSocket flow is
    its connection. Flows are hashable, so registrations can be keyed by them.
    """

    transport_name: str  # "UDP", "TCP", "TLS", "WS" or "WSS", as written in Via
    reliable: bool
    peer: tuple[str, int]
    local: tuple[str, int]
    identity: str | None  # the token's ``sub`` on an authenticated WebSocket

    def __hash__(self) -> int:
        """Flows key registrations and transactions."""

    def send(self, message: Message) -> None:
        """Write ``message`` to the peer."""

    def send_response(self, response: Response) -> None:
        """Write a response to the request that came over this flow."""


class MessageSink(Protocol):
    """What the transports deliver to (the transaction layer's adapter)."""

    def message_received(self, message: Message, flow: Flow) -> None:
        """A well-formed message arrived on ``flow``."""

    def flow_closed(self, flow: Flow) -> None:
        """A connection-oriented flow ended; its registrations end with it."""


def error_response(error: SipParseError) -> Response:
    """The response to a request that failed to parse.

    When Via/From/To/Call-ID/CSeq were readable it is a proper reply; else a
    bare status line, which a stream peer can still read (RFC 3261 §21.4.1).
    """
    reason = f"Bad Request ({error.reason})" if error.status == 400 else error.reason
    reason = reason.replace("\r", " ").replace("\n", " ")[:120]
    if error.request is not None:
        return make_response(error.request, error.status, reason)
    return Response(status=error.status, reason=reason)


def _host_port(address: IAddress) -> tuple[str, int]:
    return (getattr(address, "host", "?"), getattr(address, "port", 0))


def report_parse_error(counters: Counters, flow: Flow, error: SipParseError, answer: bool) -> None:
    """Count a malformed message and answer it if ``answer``."""
    counters.inc("sip_parse_errors_total", transport=flow.transport_name)
    log.info(
        "malformed SIP from {peer} over {transport}: {reason}",
        peer=flow.peer,
        transport=flow.transport_name,
        reason=error.reason,
    )
    if answer:
        flow.send_response(error_response(error))


def deliver(sink: MessageSink, message: Message, flow: Flow) -> None:
    """Hand a parsed message to the sink, requests stamped with their source.

    RFC 3261 §18.2.1 / RFC 3581 §4: ``received`` and ``rport`` record where
    the request really came from, for responses and for logs.
    """
    if isinstance(message, Request):
        stamp_received(message, *flow.peer)
    sink.message_received(message, flow)


@dataclass(frozen=True, slots=True, eq=True)
class UdpFlow:
    """A UDP peer address reached through one of our sockets."""

    listener: SipUdpProtocol
    peer: tuple[str, int]
    transport_name: str = "UDP"
    reliable: bool = False
    identity: str | None = None

    @property
    def local(self) -> tuple[str, int]:
        """Our socket's address."""
        return self.listener.local

    def send(self, message: Message) -> None:
        """Send to the flow's peer address."""
        self.listener.send_to(message.to_bytes(), self.peer)

    def send_response(self, response: Response) -> None:
        """Send per RFC 3261 §18.2.2 / RFC 3581 §4 (received and rport)."""
        try:
            address = response_address(response.top_via)
        except SipParseError:
            return
        self.listener.send_to(response.to_bytes(), address)


class SipUdpProtocol(protocol.DatagramProtocol):
    """One UDP socket carrying SIP."""

    def __init__(self, sink: MessageSink, counters: Counters) -> None:
        self.sink = sink
        self.counters = counters
        self.local: tuple[str, int] = ("0.0.0.0", 0)

    def startProtocol(self) -> None:
        self.local = _host_port(self.transport.getHost())  # type: ignore[union-attr]

    def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Write one datagram."""
        try:
            self.transport.write(data, address)  # type: ignore[union-attr]
        except OSError as e:
            self.counters.inc("sip_send_errors_total", transport="UDP")
            log.info("UDP send to {address} failed: {error}", address=address, error=e)

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        # RFC 5626 §3.5.1 keep-alives over UDP are STUN; bare CRLFs are
        # sent by some phones as NAT keep-alives: both are ignored.
        if not data.strip(b"\r\n\x00") or data[0] < 0x20:
            return
        flow = UdpFlow(self, (addr[0], addr[1]))
        try:
            message = parse_message(data)
        except SipParseError as e:
            if e.request is not None:
                stamp_received(e.request, *flow.peer)
            report_parse_error(self.counters, flow, e, answer=e.request is not None)
            return
        deliver(self.sink, message, flow)


# A connection must deliver a whole message within this many seconds of
# opening, or of the first byte of the next one: slow-drip and silent
# connections (slowloris) cannot pin sockets. Between messages a connection
# may stay idle as long as it likes (a registered phone's flow).
MESSAGE_DEADLINE = 30.0


class SipStreamProtocol(protocol.Protocol, TimeoutMixin):
    """One TCP or TLS connection carrying SIP; it is its own :class:`Flow`."""

    reliable = True
    identity: str | None = None

    def __init__(self, sink: MessageSink, counters: Counters, transport_name: str, max_size: int) -> None:
        self.sink = sink
        self.counters = counters
        self.transport_name = transport_name
        self.framer = StreamFramer(max_size)
        self.peer: tuple[str, int] = ("?", 0)
        self.local: tuple[str, int] = ("?", 0)
        self.closed = False

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def connectionMade(self) -> None:
        self.peer = _host_port(self.transport.getPeer())  # type: ignore[union-attr]
        self.local = _host_port(self.transport.getHost())  # type: ignore[union-attr]
        self.setTimeout(MESSAGE_DEADLINE)

    def timeoutConnection(self) -> None:
        self.counters.inc("sip_stream_timeouts_total", transport=self.transport_name)
        log.info("closing {transport} connection from {peer}: no complete message in time",
                 transport=self.transport_name, peer=self.peer)
        self.closed = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def send(self, message: Message) -> None:
        """Write on this connection."""
        if not self.closed:
            self.transport.write(message.to_bytes())  # type: ignore[union-attr]

    def send_response(self, response: Response) -> None:
        """Responses go back on the connection the request came over (§18.2.2)."""
        self.send(response)

    def dataReceived(self, data: bytes) -> None:
        try:
            items = self.framer.feed(data)
        except SipParseError as e:
            # Framing is lost (no Content-Length, oversize): answer and close.
            report_parse_error(self.counters, self, e, answer=True)
            self.closed = True
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        # Idle between messages is fine; a half-received message has a deadline.
        self.setTimeout(MESSAGE_DEADLINE if self.framer.pending else None)
        for item in items:
            if self.closed:
                return
            if isinstance(item, KeepAlive):
                self.transport.write(b"\r\n")  # type: ignore[union-attr]
            elif isinstance(item, SipParseError):
                report_parse_error(self.counters, self, item, answer=True)
            else:
                deliver(self.sink, item, self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self.setTimeout(None)
        self.sink.flow_closed(self)


class SipStreamFactory(protocol.Factory):
    """Builds :class:`SipStreamProtocol` for a TCP or TLS listener."""

    def __init__(self, sink: MessageSink, counters: Counters, transport_name: str, max_size: int) -> None:
        self.sink = sink
        self.counters = counters
        self.transport_name = transport_name
        self.max_size = max_size

    def buildProtocol(self, addr: IAddress) -> SipStreamProtocol:
        return SipStreamProtocol(self.sink, self.counters, self.transport_name, self.max_size)
