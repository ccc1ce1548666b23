"""Matching messages to transactions, and keeping the set of live ones.

Rules of operation:

* A response matches the client transaction with its top Via branch and
  CSeq method (RFC 3261 §17.1.3); one that matches none is a
  :class:`StrayResponse` for the TU (2xx retransmissions, §13.2.2.4).
* A request matches a server transaction by branch, sent-by and method,
  with ACK matching its INVITE (§17.2.3). A retransmission is handled by its
  transaction; a new request creates one and reaches the TU as
  :class:`RequestReceived`.
* CANCEL (§9.2) gets its own transaction, answered here: 200 and a
  :class:`CancelReceived` for the TU if the INVITE transaction is live and
  unanswered, else 481.
* An ACK that matches no transaction in Completed state (the ACK for a 2xx)
  goes to the TU as :class:`AckReceived`.
* Terminated transactions are dropped after every input, so ``len(layer)``
  is the number of live transactions (tests count it back to zero).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable, Hashable, Union

from telebridge.sip.message import Request, Response, make_response
from telebridge.sip.transaction import (
    T1,
    T2,
    T4,
    ClientTransaction,
    Event,
    ResponseReceived,
    SendMessage,
    ServerTransaction,
    State,
    TransactionTimedOut,
    same_branch_request,
)

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU, with the server transaction to answer on."""

    transaction: ServerTransaction
    request: Request
    source: Hashable


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """The INVITE of ``transaction`` was cancelled; the TU should send 487."""

    transaction: ServerTransaction
    cancel: Request


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx: it belongs to the dialog, not a transaction (§13.3.1.4)."""

    request: Request
    source: Hashable


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction."""

    response: Response
    source: Hashable


LayerEvent = Union[Event, RequestReceived, CancelReceived, AckReceived, StrayResponse]
ServerKey = tuple[str, str, int | None, str]


def new_branch(random: Callable[[int], str] = secrets.token_hex) -> str:
    """A branch that is unique and RFC 3261 compliant (starts with the magic cookie)."""
    return MAGIC_COOKIE + random(10)


def _server_key(request: Request, method: str) -> ServerKey:
    via = request.top_via
    return (via.branch or "", via.host.lower(), via.port, method)


class TransactionLayer:
    """Every live transaction of one SIP endpoint."""

    def __init__(self, t1: float = T1, t2: float = T2, t4: float = T4) -> None:
        self.t1, self.t2, self.t4 = t1, t2, t4
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[ServerKey, ServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def receive(self, message: Request | Response, source: Hashable, reliable: bool, now: float) -> list[LayerEvent]:
        """Feed one parsed message that arrived from ``source``."""
        if isinstance(message, Response):
            events = self._receive_response(message, source, now)
        else:
            events = self._receive_request(message, source, reliable, now)
        self._collect()
        return events

    def _receive_response(self, response: Response, source: Hashable, now: float) -> list[LayerEvent]:
        key = (response.branch or "", response.cseq[1])
        client = self._clients.get(key)
        if client is None:
            return [StrayResponse(response, source)]
        events: list[LayerEvent] = list(client.receive_response(response, now))
        if client.cancel_pending and response.status < 200:
            client.cancel_pending = False
            events += self._send_cancel(client, now)
        return events

    def _receive_request(self, request: Request, source: Hashable, reliable: bool, now: float) -> list[LayerEvent]:
        method = request.method
        if method == "ACK":
            invite = self._servers.get(_server_key(request, "INVITE"))
            if invite is not None and invite.state in (State.COMPLETED, State.CONFIRMED):
                return list(invite.receive_ack(now))
            return [AckReceived(request, source)]
        key = _server_key(request, method)
        existing = self._servers.get(key)
        if existing is not None:
            return list(existing.receive_request(now))
        server = ServerTransaction(request, source, reliable, now, self.t1, self.t2, self.t4)
        self._servers[key] = server
        if method != "CANCEL":
            return [RequestReceived(server, request, source)]
        invite = self._servers.get(_server_key(request, "INVITE"))
        if invite is None or invite.state not in (State.PROCEEDING,):
            return list(server.send_response(make_response(request, 481), now))
        events: list[LayerEvent] = list(server.send_response(make_response(request, 200), now))
        events.append(CancelReceived(invite, request))
        return events

    def send_request(
        self, request: Request, destination: Hashable, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[LayerEvent]]:
        """Start a client transaction; ``request`` must already carry its Via branch."""
        client = ClientTransaction(request, destination, reliable, now, self.t1, self.t2, self.t4)
        self._clients[(request.branch or "", request.method)] = client
        return client, list(client.start())

    def send_response(self, transaction: ServerTransaction, response: Response, now: float) -> list[LayerEvent]:
        """Answer a request through its server transaction."""
        events: list[LayerEvent] = list(transaction.send_response(response, now))
        self._collect()
        return events

    def cancel(self, invite: ClientTransaction, now: float) -> list[LayerEvent]:
        """CANCEL a pending INVITE (§9.1): at once if a provisional came, else after one."""
        if invite.state is State.PROCEEDING:
            return self._send_cancel(invite, now)
        if invite.state is State.CALLING:
            invite.cancel_pending = True
        return []

    def _send_cancel(self, invite: ClientTransaction, now: float) -> list[LayerEvent]:
        request = invite.request
        cancel = same_branch_request(request, "CANCEL", request.headers.get("To") or "")
        _, events = self.send_request(cancel, invite.destination, invite.reliable, now)
        return events

    def get_timer(self) -> float | None:
        """The earliest deadline of any live transaction."""
        times = [t for tx in self._all() if (t := tx.get_timer()) is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[LayerEvent]:
        """Run every due timer of every transaction."""
        events: list[LayerEvent] = []
        for tx in self._all():
            deadline = tx.get_timer()
            if deadline is not None and deadline <= now:
                events += tx.handle_timer(now)
        self._collect()
        return events

    def _all(self) -> list[ClientTransaction | ServerTransaction]:
        return [*self._clients.values(), *self._servers.values()]

    def _collect(self) -> None:
        for key in [k for k, tx in self._clients.items() if tx.terminated]:
            del self._clients[key]
        for skey in [k for k, tx in self._servers.items() if tx.terminated]:
            del self._servers[skey]


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
    "new_branch",
]
