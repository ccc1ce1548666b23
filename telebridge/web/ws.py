"""SIP over WebSocket (RFC 7118) through Autobahn: a thin adapter.

Rules of operation:

* The upgrade must ask for the ``sip`` subprotocol (RFC 7118 §4.1) and
  carry a valid token in ``?token=``; otherwise it is refused (400 or 401)
  before any flow exists, so nothing else is allocated.
* Each frame, text or binary, holds exactly one SIP message (§5.2); it is
  parsed as a whole (Content-Length optional, as for datagrams).
* The connection is its own :class:`~telebridge.sip.transport.Flow`:
  responses and later requests to the browser go back over it, and when it
  closes the sink is told, so registrations bound to it end at once.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from telebridge.metrics import Counters
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Message, Response, parse_message
from telebridge.sip.transport import MessageSink, deliver, report_parse_error
from telebridge.web.tokens import TokenError, TokenVerifier

log = Logger()

SUBPROTOCOL = "sip"


class SipWebSocketProtocol(WebSocketServerProtocol):
    """One browser's WebSocket: a reliable SIP flow."""

    factory: SipWebSocketFactory
    reliable = True
    transport_name = "WSS"

    def __init__(self) -> None:
        super().__init__()
        self.identity: str | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.local: tuple[str, int] = ("?", 0)
        self.opened = False
        # A page that closes (1000, or 1001 "going away") ends its calls at
        # once; anything else is a drop the browser may come back from.
        self.closed_cleanly = False

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def onConnect(self, request: ConnectionRequest) -> str:
        factory = self.factory
        if SUBPROTOCOL not in request.protocols:
            factory.counters.inc("ws_upgrades_refused_total", reason="subprotocol")
            raise ConnectionDeny(400, "the 'sip' WebSocket subprotocol is required (RFC 7118)")
        token = (request.params.get("token") or [""])[0]
        try:
            claims = factory.verifier.verify(token, factory.clock.seconds())
        except TokenError as e:
            factory.counters.inc("ws_upgrades_refused_total", reason="token")
            log.info("WebSocket from {peer} refused: {reason}", peer=request.peer, reason=str(e))
            raise ConnectionDeny(401, "invalid or expired token") from None
        self.identity = claims.sub
        return SUBPROTOCOL

    def onOpen(self) -> None:
        self.opened = True
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        host = self.transport.getHost()  # type: ignore[union-attr]
        self.peer = (getattr(peer, "host", "?"), getattr(peer, "port", 0))
        self.local = (getattr(host, "host", "?"), getattr(host, "port", 0))
        self.factory.counters.inc("ws_connections_total")
        self.factory.open_flows.add(self)
        log.info("WebSocket flow from {peer} for {user}", peer=self.peer, user=self.identity)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            message = parse_message(payload)
        except SipParseError as e:
            report_parse_error(self.factory.counters, self, e, answer=True)
            return
        deliver(self.factory.sink, message, self)

    def send(self, message: Message) -> None:
        """Send one message in one frame: text when it is UTF-8 (RFC 7118 §5.2)."""
        if not self.opened:
            return
        data = message.to_bytes()
        try:
            data.decode("utf-8")
            binary = False
        except UnicodeDecodeError:
            binary = True
        self.sendMessage(data, isBinary=binary)

    def send_response(self, response: Response) -> None:
        """Responses go back over this connection (RFC 7118 §5.3)."""
        self.send(response)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened:
            return
        self.opened = False
        self.closed_cleanly = wasClean and code in (1000, 1001)
        self.factory.open_flows.discard(self)
        log.info(
            "WebSocket flow from {peer} closed (code {code}, clean {clean})",
            peer=self.peer,
            code=code,
            clean=wasClean,
        )
        self.factory.sink.flow_closed(self)


class SipWebSocketFactory(WebSocketServerFactory):
    """Autobahn factory carrying what every browser connection needs."""

    protocol = SipWebSocketProtocol

    def __init__(
        self,
        url: str,
        sink: MessageSink,
        verifier: TokenVerifier,
        counters: Counters,
        clock: IReactorTime,
        max_message_size: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, protocols=[SUBPROTOCOL], **kwargs)
        self.sink = sink
        self.verifier = verifier
        self.counters = counters
        self.clock = clock
        self.open_flows: set[SipWebSocketProtocol] = set()
        self.setProtocolOptions(
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            # Pings find dead browsers whose TCP connection vanished silently.
            autoPingInterval=25,
            autoPingTimeout=10,
        )
