"""The Twisted adapter that drives the transaction layer.

It receives parsed messages from every transport (it is their
:class:`~telebridge.sip.transport.MessageSink`), feeds them with the
reactor's time to the sans-I/O :class:`TransactionLayer`, carries out the
events that come back, and keeps exactly one ``callLater`` armed at the
earliest deadline of the layer and of the transaction user (aioquic's
pattern). It knows nothing of calls: the TU is a :class:`TransactionUser`.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from telebridge.metrics import Counters
from telebridge.sip.message import Message, Request, Response, make_response
from telebridge.sip.transaction_layer import (
    CancelReceived,
    LayerEvent,
    RequestReceived,
    SendMessage,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
)
from telebridge.sip.transport import Flow

log = Logger()


class TransactionUser(Protocol):
    """What the stack hands requests to (the registrar, later the B2BUA)."""

    def handle_request(self, request: Request, flow: Flow, now: float) -> Response | None:
        """The response to send (``None`` for ACK)."""

    def flow_closed(self, flow: Flow) -> None:
        """A connection-oriented flow ended."""

    def get_timer(self) -> float | None:
        """The TU's next deadline (for example a registration's expiry)."""

    def handle_timer(self, now: float) -> None:
        """Run the TU's due work."""


class SipStack:
    """One SIP endpoint: every transport delivers here."""

    def __init__(
        self,
        reactor: IReactorTime,
        tu: TransactionUser,
        counters: Counters,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
    ) -> None:
        self.reactor = reactor
        self.tu = tu
        self.counters = counters
        self.layer = TransactionLayer(t1, t2, t4)
        self._timer: DelayedCall | None = None

    def message_received(self, message: Message, flow: Flow) -> None:
        """A transport parsed a message."""
        now = self.reactor.seconds()
        self._run(self.layer.receive(message, flow, flow.reliable, now), now)

    def flow_closed(self, flow: Flow) -> None:
        """A connection ended: its transactions fail (§17.1.4, §17.2.4), then the TU is told."""
        self._run(self.layer.transport_error(flow), self.reactor.seconds())
        self.tu.flow_closed(flow)
        self._rearm()

    def stop(self) -> None:
        """Cancel the timer (service shutdown)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _run(self, events: list[LayerEvent], now: float) -> None:
        pending = list(events)
        while pending:
            event = pending.pop(0)
            if isinstance(event, SendMessage):
                self._send(event.message, event.destination)  # type: ignore[arg-type]
            elif isinstance(event, RequestReceived):
                response = self._ask_tu(event.request, event.source, now)  # type: ignore[arg-type]
                if response is not None:
                    pending += self.layer.send_response(event.transaction, response, now)
            elif isinstance(event, CancelReceived):
                # No call is set up yet to tear down: the INVITE just ends (§9.2).
                invite = event.transaction.request
                pending += self.layer.send_response(event.transaction, make_response(invite, 487), now)
            elif isinstance(event, TransactionTimedOut):
                self.counters.inc("sip_transaction_timeouts_total")
            elif isinstance(event, TransportFailed):
                self.counters.inc("sip_transport_failures_total")
        self._rearm()

    def _ask_tu(self, request: Request, flow: Flow, now: float) -> Response | None:
        try:
            return self.tu.handle_request(request, flow, now)
        except Exception:
            # A bug in the TU must not take the stack down; the caller gets 500.
            log.failure("handling {method} from {peer}", method=request.method, peer=flow.peer)
            self.counters.inc("sip_internal_errors_total")
            return None if request.method == "ACK" else make_response(request, 500)

    @staticmethod
    def _send(message: Message, flow: Flow) -> None:
        if isinstance(message, Response):
            flow.send_response(message)
        else:
            flow.send(message)

    def _rearm(self) -> None:
        deadlines = [t for t in (self.layer.get_timer(), self.tu.get_timer()) if t is not None]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if deadlines:
            delay = max(0.0, min(deadlines) - self.reactor.seconds())
            self._timer = self.reactor.callLater(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.reactor.seconds()
        self.tu.handle_timer(now)
        self._run(self.layer.handle_timer(now), now)
