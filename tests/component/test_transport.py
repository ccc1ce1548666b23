"""SIP transports over Twisted's fake transports (no sockets)."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from telebridge.metrics import Counters
from telebridge.sip.message import Message, parse_message
from telebridge.sip.transport import Flow, SipStreamProtocol, SipUdpProtocol

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bKabc\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class RecordingSink:
    """Collects what the transport delivers."""

    def __init__(self) -> None:
        self.messages: list[tuple[Message, Flow]] = []
        self.closed: list[Flow] = []

    def message_received(self, message: Message, flow: Flow) -> None:
        self.messages.append((message, flow))

    def flow_closed(self, flow: Flow) -> None:
        self.closed.append(flow)


def _stream(clock: Clock | None = None) -> tuple[SipStreamProtocol, StringTransport, RecordingSink, Counters]:
    sink, counters = RecordingSink(), Counters()
    proto = SipStreamProtocol(sink, counters, "TCP", max_size=4096)
    proto.callLater = (clock or Clock()).callLater  # type: ignore[method-assign]
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 5060),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
    )
    proto.makeConnection(transport)
    return proto, transport, sink, counters


def test_stream_delivers_messages_split_across_reads() -> None:
    """RFC 3261 §18.3: a stream is framed by Content-Length, whatever the reads."""
    proto, _, sink, _ = _stream()
    for i in range(len(OPTIONS)):
        proto.dataReceived(OPTIONS[i : i + 1])
    proto.dataReceived(OPTIONS + OPTIONS)
    assert len(sink.messages) == 3
    assert all(flow is proto for _, flow in sink.messages)


def test_stream_answers_malformed_request_with_400_and_reason_and_stays_open() -> None:
    """A request that frames but does not parse gets 400 naming the fault."""
    proto, transport, sink, counters = _stream()
    mismatch = OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    proto.dataReceived(mismatch + OPTIONS)
    reply = parse_message(transport.value(), stream=True)
    assert reply.status == 400  # type: ignore[union-attr]
    assert "CSeq method" in reply.reason  # type: ignore[union-attr]
    assert not transport.disconnecting
    assert len(sink.messages) == 1
    assert counters.total("sip_parse_errors_total") == 1


def test_stream_unaddressable_garbage_still_gets_a_400_status_line() -> None:
    """Over a stream the reply needs no Via: the status line carries the reason."""
    proto, transport, _, _ = _stream()
    proto.dataReceived(OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"))
    assert transport.value().startswith(b"SIP/2.0 400 Bad Request (bad CSeq")


def test_stream_closes_when_framing_is_lost() -> None:
    """No Content-Length on a stream: answer 400 and close (framing is gone)."""
    proto, transport, sink, _ = _stream()
    proto.dataReceived(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    assert transport.value().startswith(b"SIP/2.0 400 ")
    assert transport.disconnecting
    assert sink.messages == []


def test_stream_oversize_message_gets_513_and_close() -> None:
    """A message past the size cap is refused with 513 (h11-style bounded buffer)."""
    proto, transport, _, _ = _stream()
    proto.dataReceived(b"OPTIONS sip:x SIP/2.0\r\nSubject: " + b"x" * 5000)
    assert transport.value().startswith(b"SIP/2.0 513 ")
    assert transport.disconnecting


def test_stream_keepalive_ping_gets_pong() -> None:
    """RFC 5626 §3.5.1: CRLFCRLF is answered with CRLF."""
    proto, transport, _, _ = _stream()
    proto.dataReceived(b"\r\n\r\n")
    assert transport.value() == b"\r\n"


def test_stream_that_never_completes_a_message_is_closed_after_the_deadline() -> None:
    """Slowloris: a half-sent message cannot pin the socket past MESSAGE_DEADLINE."""
    clock = Clock()
    proto, transport, _, counters = _stream(clock)
    proto.dataReceived(OPTIONS[:40])
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting
    assert counters.total("sip_stream_timeouts_total") == 1


def test_stream_idle_between_messages_stays_open() -> None:
    """A registered phone's connection may be silent between messages."""
    clock = Clock()
    proto, transport, sink, _ = _stream(clock)
    proto.dataReceived(OPTIONS)
    clock.advance(3600)
    assert not transport.disconnecting and len(sink.messages) == 1


def test_stream_close_tells_the_sink() -> None:
    """A closed connection ends its flow (issue 2 §5)."""
    proto, _, sink, _ = _stream()
    proto.connectionLost()
    assert sink.closed == [proto]


class FakeUdpTransport:
    """Records datagrams written by a DatagramProtocol."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 5060)


def _udp() -> tuple[SipUdpProtocol, FakeUdpTransport, RecordingSink, Counters]:
    sink, counters = RecordingSink(), Counters()
    proto = SipUdpProtocol(sink, counters)
    transport = FakeUdpTransport()
    proto.transport = transport  # type: ignore[assignment]
    proto.startProtocol()
    return proto, transport, sink, counters


def test_udp_garbage_without_routing_headers_is_dropped_and_counted() -> None:
    """DESIGN.md "Bad input": over UDP, unaddressable garbage is dropped and counted."""
    proto, transport, sink, counters = _udp()
    proto.datagramReceived(b"\xff\xfe garbage \x01", ("127.0.0.1", 4000))
    proto.datagramReceived(b"INVITE sip:x SIP/2.0\r\n\r\n", ("127.0.0.1", 4000))
    assert transport.written == []
    assert sink.messages == []
    assert counters.total("sip_parse_errors_total") == 2


def test_udp_malformed_but_addressable_request_gets_400_at_rport() -> None:
    """RFC 3581 §4: the 400 goes to the source port when rport was asked for."""
    proto, transport, sink, _ = _udp()
    bad = OPTIONS.replace(b"TCP 10.0.0.9:5060;branch=z9hG4bKabc", b"UDP 10.0.0.9:5060;branch=z9hG4bKabc;rport")
    bad = bad.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    proto.datagramReceived(bad, ("127.0.0.1", 4000))
    [(data, address)] = transport.written
    assert data.startswith(b"SIP/2.0 400 ")
    assert address == ("127.0.0.1", 4000)
    assert sink.messages == []


def test_udp_crlf_keepalives_are_ignored() -> None:
    """NAT keep-alives (bare CRLF) are neither answered nor counted as errors."""
    proto, transport, sink, counters = _udp()
    proto.datagramReceived(b"\r\n\r\n", ("127.0.0.1", 4000))
    proto.datagramReceived(b"\r\n", ("127.0.0.1", 4000))
    assert transport.written == [] and sink.messages == []
    assert counters.total("sip_parse_errors_total") == 0
