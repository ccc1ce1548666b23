"""Matching messages to transactions, and keeping the set of live ones.

Rules of operation:

* Sans-I/O like the machines it holds: :meth:`TransactionLayer.receive`,
  :meth:`~TransactionLayer.send_request`, :meth:`~TransactionLayer.send_response`,
  :meth:`~TransactionLayer.cancel`, :meth:`~TransactionLayer.transport_error` and
  :meth:`~TransactionLayer.handle_timer` return lists of events;
  :meth:`~TransactionLayer.get_timer` is the earliest deadline of all. An
  adapter re-arms one timer after every call.
* Messages come in already parsed; ``source`` is an opaque hashable naming
  the flow or address a message came from. Responses of a server
  transaction go back to its request's ``source`` (resolving Via
  received/rport is the transport's job); a client transaction sends to the
  ``destination`` it was given.
* A response matches a client transaction by top-Via branch and CSeq
  method (RFC 3261 §17.1.3). One that matches none is a
  :class:`StrayResponse` for the TU: that is how 2xx retransmissions arrive
  once the INVITE transaction is gone (§13.2.2.4).
* A request matches a server transaction by top-Via branch, sent-by and
  method, an ACK matching its INVITE (§17.2.3; only RFC 3261 branches are
  matched, the RFC 2543 rules are not implemented). A retransmission goes
  to its transaction, which re-sends the last response; a new request
  creates a transaction and reaches the TU as :class:`RequestReceived`.
* An ACK that matches no transaction (the usual ACK for a 2xx, which has
  its own branch) goes to the TU as :class:`AckReceived`; so does one that
  matches an INVITE transaction in Accepted (RFC 6026 §7.1). One matching
  an INVITE transaction before its final response is dropped.
* CANCEL (§9.2) gets its own server transaction, answered here: 481 if no
  INVITE transaction matches; otherwise 200 (with the To tag the INVITE's
  responses use, when one was sent) and, if the INVITE has no final
  response yet, a :class:`CancelReceived` so the TU answers it 487.
  Only INVITE transactions can be cancelled here (§9.1 advises against
  cancelling anything else).
* :meth:`~TransactionLayer.cancel` sends a CANCEL (§9.1) only once a
  provisional response has arrived; before that it is remembered and sent
  with the first one, and dropped if a final response comes instead.
* Terminated transactions are removed after every call, so ``len(layer)``
  is the number of live transactions.
* Deadlines are kept in a heap, fed by the transactions whose timers
  changed (each transaction's :class:`~telebridge.sip.transaction.TimerTable`
  says so); an entry whose transaction has since moved on is dropped when
  it reaches the top. So neither a message nor a timer costs a scan of
  every live transaction (that scan was most of the gateway's CPU while
  hundreds of calls were being set up).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from dataclasses import dataclass
from typing import Callable, Hashable, Union

from telebridge.sip.message import Request, Response, make_response
from telebridge.sip.transaction import (
    T1,
    T2,
    T4,
    TIMER_D,
    TRYING_DELAY,
    AckReceived,
    ClientTransaction,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    SendMessage,
    ServerTransaction,
    State,
    Transaction,
    TransactionTimedOut,
    TransactionUsageError,
    TransportFailed,
    build_cancel,
)

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU, with the server transaction to answer it on."""

    transaction: ServerTransaction
    request: Request
    source: Hashable


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """The peer cancelled the INVITE of ``transaction``; the TU should answer it 487 (§9.2)."""

    transaction: InviteServerTransaction
    cancel: Request


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (a 2xx retransmission, say)."""

    response: Response
    source: Hashable


LayerEvent = Union[Event, RequestReceived, CancelReceived, StrayResponse]
ClientKey = tuple[str, str]
ServerKey = tuple[str, str, int | None, str]


def new_branch(token: Callable[[int], str] = secrets.token_hex) -> str:
    """A fresh RFC 3261 branch: the magic cookie and 80 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + token(10)


def _client_key(message: Request | Response) -> ClientKey:
    return (message.branch or "", message.cseq[1])


def _server_key(request: Request, method: str) -> ServerKey:
    via = request.top_via
    return (via.branch or "", via.host.lower(), via.port, method)


class TransactionLayer:
    """Every live transaction of one SIP endpoint."""

    def __init__(
        self,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        *,
        timer_d: float = TIMER_D,
        trying_delay: float = TRYING_DELAY,
    ) -> None:
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.timer_d = timer_d
        self.trying_delay = trying_delay
        self._clients: dict[ClientKey, ClientTransaction] = {}
        self._servers: dict[ServerKey, ServerTransaction] = {}
        self._cancel_pending: set[InviteClientTransaction] = set()
        # Where each live transaction is kept, to forget it without a search.
        self._homes: dict[Transaction, tuple[dict, ClientKey | ServerKey]] = {}
        self._changed: set[Transaction] = set()
        self._deadlines: list[tuple[float, int, Transaction]] = []
        self._order = itertools.count()  # ties in the heap never compare transactions

    def __len__(self) -> int:
        """How many transactions are live."""
        return len(self._clients) + len(self._servers)

    def receive(self, message: Request | Response, source: Hashable, reliable: bool, now: float) -> list[LayerEvent]:
        """Feed one parsed message that arrived from ``source``.

        ``reliable`` says whether it came over a reliable transport; it
        sets the timers of a server transaction it creates (§17).
        """
        if isinstance(message, Response):
            events = self._receive_response(message, source, now)
        else:
            events = self._receive_request(message, source, reliable, now)
        self._collect()
        return events

    def send_request(
        self, request: Request, destination: Hashable, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[LayerEvent]]:
        """Start a client transaction for ``request`` and send it to ``destination``.

        The request is sent as given: it must already carry a top Via with
        an RFC 3261 branch (see :func:`new_branch`) not used by a live
        transaction of the same method. An ACK is never a transaction of
        its own (§17.1.1.3, §13.2.2.4): send it straight to the transport.
        """
        if request.method == "ACK":
            raise TransactionUsageError("an ACK is sent without a transaction")
        branch = request.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise TransactionUsageError(f"the top Via needs a branch starting with {MAGIC_COOKIE}")
        key = _client_key(request)
        if key in self._clients:
            raise TransactionUsageError(f"branch {branch} is in use by a live {request.method} transaction")
        client: ClientTransaction
        if request.method == "INVITE":
            client = InviteClientTransaction(
                request, destination, reliable=reliable, t1=self.t1, t2=self.t2, t4=self.t4, timer_d=self.timer_d
            )
        else:
            client = NonInviteClientTransaction(
                request, destination, reliable=reliable, t1=self.t1, t2=self.t2, t4=self.t4
            )
        self._clients[key] = client
        self._watch(client, self._clients, key)
        return client, list(client.start(now))

    def send_response(self, transaction: ServerTransaction, response: Response, now: float) -> list[LayerEvent]:
        """Answer a request through its server transaction."""
        events: list[LayerEvent] = list(transaction.send_response(response, now))
        self._collect()
        return events

    def cancel(self, transaction: ClientTransaction, now: float) -> list[LayerEvent]:
        """CANCEL a pending INVITE (§9.1).

        Sent at once if a provisional response has arrived, else with the
        first one; nothing if a final response came already, or a CANCEL is
        already pending or live. Only an INVITE can be cancelled.
        """
        if not isinstance(transaction, InviteClientTransaction):
            raise TransactionUsageError("only an INVITE client transaction can be cancelled")
        if transaction in self._cancel_pending or (transaction.request.branch or "", "CANCEL") in self._clients:
            return []
        if transaction.state is State.CALLING:
            self._cancel_pending.add(transaction)
            return []
        if transaction.state is State.PROCEEDING:
            return self._send_cancel(transaction, now)
        return []

    def transport_error(self, peer: Hashable) -> list[LayerEvent]:
        """The transport to ``peer`` failed (a refused or closed connection, §17.1.4, §17.2.4).

        Every live transaction sending there ends with :class:`TransportFailed`.
        """
        events: list[LayerEvent] = []
        for transaction in self._all():
            if transaction.peer == peer:
                events += transaction.transport_error()
        self._collect()
        return events

    def get_timer(self) -> float | None:
        """The earliest deadline of any live transaction, or ``None``."""
        self._collect()
        deadlines = self._deadlines
        while deadlines:
            deadline, _, transaction = deadlines[0]
            if self._current(transaction, deadline):
                return deadline
            heapq.heappop(deadlines)
        return None

    def handle_timer(self, now: float) -> list[LayerEvent]:
        """Run every timer due at ``now`` in every transaction."""
        events: list[LayerEvent] = []
        self._collect()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, transaction = heapq.heappop(deadlines)
            if self._current(transaction, deadline):
                events += transaction.handle_timer(now)
        self._collect()
        return events

    def _watch(self, transaction: Transaction, home: dict, key: ClientKey | ServerKey) -> None:
        self._homes[transaction] = (home, key)
        self._changed.add(transaction)
        transaction._timers.on_change = lambda: self._changed.add(transaction)

    def _current(self, transaction: Transaction, deadline: float) -> bool:
        """Whether a heap entry still stands: its transaction is live and still due then."""
        return transaction in self._homes and transaction.get_timer() == deadline

    def _receive_response(self, response: Response, source: Hashable, now: float) -> list[LayerEvent]:
        client = self._clients.get(_client_key(response))
        if client is None:
            return [StrayResponse(response, source)]
        events: list[LayerEvent] = list(client.receive_response(response, now))
        if isinstance(client, InviteClientTransaction) and client in self._cancel_pending:
            if client.state is State.PROCEEDING:
                self._cancel_pending.discard(client)
                events += self._send_cancel(client, now)
            elif client.state is not State.CALLING:
                self._cancel_pending.discard(client)
        return events

    def _receive_request(self, request: Request, source: Hashable, reliable: bool, now: float) -> list[LayerEvent]:
        if request.method == "ACK":
            invite = self._invite_server(request)
            if invite is None:
                return [AckReceived(request, source)]
            return list(invite.receive_ack(request, now))
        key = _server_key(request, request.method)
        existing = self._servers.get(key)
        if existing is not None:
            return list(existing.receive_request(now))
        server: ServerTransaction
        if request.method == "INVITE":
            server = InviteServerTransaction(
                request,
                source,
                now,
                reliable=reliable,
                t1=self.t1,
                t2=self.t2,
                t4=self.t4,
                trying_delay=self.trying_delay,
            )
        else:
            server = NonInviteServerTransaction(
                request, source, now, reliable=reliable, t1=self.t1, t2=self.t2, t4=self.t4
            )
        self._servers[key] = server
        self._watch(server, self._servers, key)
        if request.method == "CANCEL":
            return self._answer_cancel(server, request, now)
        return [RequestReceived(server, request, source)]

    def _answer_cancel(self, server: ServerTransaction, cancel: Request, now: float) -> list[LayerEvent]:
        invite = self._invite_server(cancel)
        if invite is None:
            return list(server.send_response(make_response(cancel, 481), now))
        # §9.2: the 200 to CANCEL should carry the To tag of the INVITE's responses.
        tag = invite.last_response.to_tag if invite.last_response is not None else None
        events: list[LayerEvent] = list(server.send_response(make_response(cancel, 200, to_tag=tag), now))
        if invite.state is State.PROCEEDING:
            events.append(CancelReceived(invite, cancel))
        return events

    def _invite_server(self, request: Request) -> InviteServerTransaction | None:
        server = self._servers.get(_server_key(request, "INVITE"))
        return server if isinstance(server, InviteServerTransaction) else None

    def _send_cancel(self, invite: InviteClientTransaction, now: float) -> list[LayerEvent]:
        _, events = self.send_request(build_cancel(invite.request), invite.peer, invite.reliable, now)
        return events

    def _all(self) -> list[Transaction]:
        return [*self._clients.values(), *self._servers.values()]

    def _collect(self) -> None:
        """Forget the transactions that ended; index the new deadlines of the others."""
        if not self._changed:
            return
        for transaction in self._changed:
            if transaction.terminated:
                home, key = self._homes.pop(transaction, (None, None))
                if home is not None:
                    del home[key]
                self._cancel_pending.discard(transaction)  # type: ignore[arg-type]
            elif (deadline := transaction.get_timer()) is not None:
                heapq.heappush(self._deadlines, (deadline, next(self._order), transaction))
        self._changed.clear()
        if len(self._deadlines) > 4 * len(self._homes) + 64:
            # Mostly entries that moved on: build the index again from the live transactions.
            self._deadlines = [(d, next(self._order), tx) for tx in self._homes if (d := tx.get_timer()) is not None]
            heapq.heapify(self._deadlines)


__all__ = [
    "AckReceived",
    "CancelReceived",
    "LayerEvent",
    "RequestReceived",
    "ResponseReceived",
    "SendMessage",
    "StrayResponse",
    "TransactionLayer",
    "TransactionTimedOut",
    "TransactionUsageError",
    "TransportFailed",
    "new_branch",
]
