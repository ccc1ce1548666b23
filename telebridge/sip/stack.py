"""The Twisted adapter that drives the transaction layer.

It receives parsed messages from every transport (it is their
:class:`~telebridge.sip.transport.MessageSink`), feeds them with the
reactor's time to the sans-I/O :class:`TransactionLayer`, carries out the
events that come back, and keeps exactly one ``callLater`` armed at the
earliest deadline of the layer and of the transaction user (aioquic's
pattern). It knows nothing of calls: the TU is a :class:`TransactionUser`.

Rules of operation:

* A new request reaches the TU as a :class:`ServerRequest`. The TU may
  answer at once (return the response) or later through
  :meth:`ServerRequest.respond` (an INVITE waiting for the far side).
* The TU starts client transactions with :meth:`SipStack.send_request`;
  each final or provisional response is handed to the callback given.
  A timeout reaches it as a 408 and a transport failure as a 503 made
  here (RFC 3261 §8.1.3.1, §8.1.3.1 again for transport errors), so the
  TU deals with responses only.
* ACKs for 2xx, CANCELs of pending INVITEs and responses that match no
  transaction (2xx retransmissions) go to the TU's ``ack_received``,
  ``cancel_received`` and ``stray_response``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from telebridge.metrics import Counters
from telebridge.sip.message import Message, Request, Response, make_response
from telebridge.sip.transaction import ClientTransaction, ServerTransaction
from telebridge.sip.transaction_layer import (
    AckReceived,
    CancelReceived,
    LayerEvent,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
)
from telebridge.sip.transport import Flow

log = Logger()


ResponseCallback = Callable[[Response], None]


@dataclass(eq=False)
class ServerRequest:
    """A request the TU must answer, now or later, exactly once with a final response."""

    request: Request
    flow: Flow
    transaction: ServerTransaction
    stack: SipStack = field(repr=False)

    @property
    def answered(self) -> bool:
        """A final response was sent."""
        last = self.transaction.last_response
        return last is not None and last.status >= 200

    def respond(self, response: Response) -> None:
        """Send a provisional or final response (ignored once a final one went)."""
        if not self.answered:
            self.stack.respond(self.transaction, response)


class TransactionUser(Protocol):
    """What the stack hands requests to (the router in front of registrar and calls)."""

    def request_received(self, incoming: ServerRequest, now: float) -> Response | None:
        """The response to send now, or ``None`` to answer later through ``incoming``."""

    def ack_received(self, ack: Request, flow: Flow) -> None:
        """An ACK for a 2xx (§13.3.1.4)."""

    def cancel_received(self, incoming: ServerRequest) -> None:
        """The peer cancelled a pending INVITE; the TU answers it 487 (§9.2)."""

    def stray_response(self, response: Response, flow: Flow) -> None:
        """A response for no live transaction: a 2xx retransmission to ACK again."""

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
        self._callbacks: dict[ClientTransaction, ResponseCallback] = {}
        self._incoming: dict[ServerTransaction, ServerRequest] = {}

    def message_received(self, message: Message, flow: Flow) -> None:
        """A transport parsed a message."""
        now = self.reactor.seconds()
        self._run(self.layer.receive(message, flow, flow.reliable, now), now)

    def flow_closed(self, flow: Flow) -> None:
        """A connection ended: its transactions fail (§17.1.4, §17.2.4), then the TU is told."""
        self._run(self.layer.transport_error(flow), self.reactor.seconds())
        self.tu.flow_closed(flow)
        self._rearm()

    def send_request(self, request: Request, flow: Flow, on_response: ResponseCallback) -> ClientTransaction:
        """Start a client transaction; every response (or a made-up 408/503) goes to ``on_response``."""
        now = self.reactor.seconds()
        transaction, events = self.layer.send_request(request, flow, flow.reliable, now)
        self._callbacks[transaction] = on_response
        self._run(events, now)
        return transaction

    def send_ack(self, ack: Request, flow: Flow) -> None:
        """An ACK for a 2xx is the TU's own, with no transaction (§13.2.2.4)."""
        flow.send(ack)

    def cancel(self, transaction: ClientTransaction) -> None:
        """CANCEL a pending INVITE (§9.1); its 487 arrives through its callback."""
        now = self.reactor.seconds()
        self._run(self.layer.cancel(transaction, now), now)

    def respond(self, transaction: ServerTransaction, response: Response) -> None:
        """Answer a request the TU kept for later."""
        now = self.reactor.seconds()
        self._run(self.layer.send_response(transaction, response, now), now)

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
                incoming = ServerRequest(event.request, event.source, event.transaction, self)  # type: ignore[arg-type]
                response = self._ask_tu(incoming, now)
                if response is not None:
                    pending += self.layer.send_response(event.transaction, response, now)
                elif event.request.method == "INVITE":
                    self._incoming[event.transaction] = incoming
            elif isinstance(event, ResponseReceived):
                self._deliver(event.transaction, event.response)
            elif isinstance(event, CancelReceived):
                self._cancelled(event.transaction, now)
            elif isinstance(event, AckReceived):
                self._guard(self.tu.ack_received, event.request, event.source)
            elif isinstance(event, StrayResponse):
                self._guard(self.tu.stray_response, event.response, event.source)
            elif isinstance(event, (TransactionTimedOut, TransportFailed)):
                timed_out = isinstance(event, TransactionTimedOut)
                self.counters.inc("sip_transaction_timeouts_total" if timed_out else "sip_transport_failures_total")
                transaction = event.transaction
                if isinstance(transaction, ClientTransaction) and transaction in self._callbacks:
                    reason = "Request Timeout" if timed_out else "Service Unavailable (transport failed)"
                    made_up = make_response(transaction.request, 408 if timed_out else 503, reason)
                    self._deliver(transaction, made_up)
        self._forget_finished()
        self._rearm()

    def _deliver(self, transaction: ClientTransaction, response: Response) -> None:
        callback = self._callbacks.get(transaction)
        if callback is None:
            return
        if response.status >= 200:
            # A client transaction has one final response for its TU (§17.1.1.2).
            del self._callbacks[transaction]
        self._guard(callback, response)

    def _cancelled(self, transaction: ServerTransaction, now: float) -> None:
        incoming = self._incoming.get(transaction)
        if incoming is None:
            self.respond(transaction, make_response(transaction.request, 487))
        else:
            self._guard(self.tu.cancel_received, incoming)

    def _forget_finished(self) -> None:
        for transaction in [t for t in self._callbacks if t.terminated]:
            del self._callbacks[transaction]
        for transaction in [t for t, i in self._incoming.items() if t.terminated or i.answered]:
            del self._incoming[transaction]

    def _guard(self, call: Callable[..., None], *args: object) -> None:
        """Run TU code; a bug there is logged and counted, the stack goes on."""
        try:
            call(*args)
        except Exception:
            log.failure("in the transaction user")
            self.counters.inc("sip_internal_errors_total")

    def _ask_tu(self, incoming: ServerRequest, now: float) -> Response | None:
        request = incoming.request
        try:
            return self.tu.request_received(incoming, now)
        except Exception:
            # A bug in the TU must not take the stack down; the caller gets 500.
            log.failure("handling {method} from {peer}", method=request.method, peer=incoming.flow.peer)
            self.counters.inc("sip_internal_errors_total")
            return make_response(request, 500)

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
