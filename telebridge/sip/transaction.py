"""The four SIP transaction state machines (RFC 3261 §17, RFC 6026).

Rules of operation:

* Sans-I/O. Every input is a method taking ``now`` (when it applies) and
  returning a list of output events: :class:`SendMessage` for the transport,
  the others for the transaction user (TU). :meth:`Transaction.get_timer`
  gives the next deadline as an absolute time and
  :meth:`Transaction.handle_timer` runs whatever is due. Nothing here reads
  a clock, opens a socket or draws a random number.
* T1, T2 and T4 (RFC 3261 Table 4) and the other fixed waits are
  constructor parameters with the RFC's defaults. On a reliable transport
  the retransmission timers A, E and G are never armed, and the
  wait-for-retransmissions timers D, I, J and K are zero: the machine goes
  straight to Terminated instead of arming them (§17.1.1.2, §17.1.2.2,
  §17.2.1, §17.2.2).
* INVITE client (§17.1.1, Figure 5; RFC 6026 §7.2): Calling retransmits on
  A (T1, 2*T1, 4*T1, ... with no T2 cap) and gives up on B (64*T1). Any
  provisional response moves to Proceeding and stops both: from there on
  only the TU ends an unanswered INVITE (by CANCEL). A 300-699 response is
  ACKed here (§17.1.1.3) and Completed re-sends that ACK for every
  retransmitted final response until D (32 s). A 2xx moves to Accepted
  for M (64*T1): further 2xx responses still reach the TU, which ACKs them
  itself (§13.2.2.4).
* Non-INVITE client (§17.1.2, Figure 6): E retransmits (doubling up to T2,
  every T2 once a provisional response has arrived), F gives up after
  64*T1, and Completed absorbs response retransmissions until K (T4).
* INVITE server (§17.2.1, Figure 7; RFC 6026 §7.1): sends 100 Trying
  itself when the TU has been silent for 200 ms. A retransmitted INVITE
  gets the last response again. A 300-699 final is retransmitted on G
  (doubling up to T2) until the ACK arrives (Confirmed, then I = T4) or H
  (64*T1) gives up. A 2xx moves to Accepted for L (64*T1): INVITE
  retransmissions are absorbed, the TU's own 2xx retransmissions pass
  through (§13.3.1.4 makes them its job) and ACKs go to the TU.
* Non-INVITE server (§17.2.2, Figure 8): a retransmitted request gets the
  last response again (nothing while Trying); J (64*T1) keeps the final
  response around for them.
* Timer B, F or H firing yields :class:`TransactionTimedOut` (for a client,
  the TU acts as if it received 408, §8.1.3.1). A transport error reported
  with :meth:`Transaction.transport_error` yields :class:`TransportFailed`
  (§17.1.4, §17.2.4). Both terminate the transaction.
* Local misuse (a response from the TU in a state that cannot send one)
  raises :class:`TransactionUsageError`; nothing a peer sends raises.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Hashable, Union

from telebridge.sip.message import Headers, Request, Response, make_response

T1 = 0.5  # RTT estimate (RFC 3261 Table 4)
T2 = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # longest time a message stays in the network
TIMER_D = 32.0  # §17.1.1.2: "at least 32 seconds" on unreliable transports
TRYING_DELAY = 0.2  # §17.2.1: 100 Trying if the TU has not answered in 200 ms


class State(enum.Enum):
    """Transaction states (RFC 3261 Figures 5-8, RFC 6026 Accepted)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    """The timers of RFC 3261 Table 4 and RFC 6026, and the 100 Trying delay."""

    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    TRYING = "100 Trying"


class TransactionUsageError(Exception):
    """The TU asked for something the transaction cannot do in its state."""


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Write ``message`` to ``destination``.

    For a client transaction that is the destination given when it was
    created; for a server transaction, the source its request came from.
    """

    message: Request | Response
    destination: Hashable


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU of a client transaction."""

    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx: it belongs to the TU, not to a transaction (§13.3.1.4).

    ``transaction`` is the INVITE server transaction in Accepted state when
    the ACK reused its branch (RFC 6026 §7.1), else ``None``.
    """

    request: Request
    source: Hashable
    transaction: InviteServerTransaction | None = None


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B, F or H fired. For a client TU this stands for a 408 (§8.1.3.1)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not deliver for this transaction (§17.1.4, §17.2.4)."""

    transaction: Transaction


Event = Union[SendMessage, ResponseReceived, AckReceived, TransactionTimedOut, TransportFailed]


def _same_branch_request(request: Request, method: str, to: str) -> Request:
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", to)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} {method}")
    return Request(headers=headers, method=method, uri=request.uri)


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a 300-699 response to ``invite`` (RFC 3261 §17.1.1.3).

    Same Request-URI, Call-ID, From and CSeq number as the INVITE, the To
    of the response (with its tag), one Via equal to the INVITE's top Via
    (so the same branch), and the INVITE's Route headers.
    """
    return _same_branch_request(invite, "ACK", response.headers.get("To") or "")


def build_cancel(request: Request) -> Request:
    """The CANCEL for ``request`` (RFC 3261 §9.1).

    Same Request-URI, Call-ID, From, To (tags included) and CSeq number,
    one Via equal to the request's top Via, and the request's Route headers.
    """
    return _same_branch_request(request, "CANCEL", request.headers.get("To") or "")


class TimerTable(dict[Timer, float]):
    """A transaction's armed timers, which call ``on_change`` whenever they change: the
    transaction layer keeps its own index of deadlines by it instead of scanning every
    live transaction on every message."""

    __slots__ = ("on_change",)

    def __init__(self) -> None:
        super().__init__()
        self.on_change: Callable[[], None] = lambda: None

    def __setitem__(self, timer: Timer, deadline: float) -> None:
        super().__setitem__(timer, deadline)
        self.on_change()

    def __delitem__(self, timer: Timer) -> None:
        super().__delitem__(timer)
        self.on_change()

    def pop(self, timer: Timer, *default: Any) -> Any:  # type: ignore[override]
        value = super().pop(timer, *default)
        self.on_change()
        return value

    def clear(self) -> None:
        super().clear()
        self.on_change()


class Transaction(abc.ABC):
    """What the four machines share: the request, the peer and the timers."""

    #: The state each machine starts in (RFC 3261 Figures 5-8).
    initial_state: ClassVar[State]

    def __init__(self, request: Request, peer: Hashable, *, reliable: bool, t1: float, t2: float, t4: float) -> None:
        self.state = self.initial_state
        self.request = request
        #: Where this transaction's messages go (client: destination; server: source).
        self.peer = peer
        self.reliable = reliable
        self.t1, self.t2, self.t4 = t1, t2, t4
        self._timers = TimerTable()
        self._interval = t1

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.request.branch} {self.state.value}>"

    @property
    def terminated(self) -> bool:
        """True once the transaction is over and can be forgotten."""
        return self.state is State.TERMINATED

    @property
    def timers(self) -> dict[Timer, float]:
        """The armed timers and their deadlines (a copy, for logs and tests)."""
        return dict(self._timers)

    def get_timer(self) -> float | None:
        """The earliest deadline (absolute time), or ``None`` when nothing is armed."""
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> list[Event]:
        """Run every timer due at ``now``, earliest first."""
        events: list[Event] = []
        while due := [(deadline, timer) for timer, deadline in self._timers.items() if deadline <= now]:
            _, timer = min(due, key=lambda item: item[0])
            del self._timers[timer]
            events += self._fire(timer, now)
        return events

    def transport_error(self) -> list[Event]:
        """The transport failed to send for this transaction (§17.1.4, §17.2.4)."""
        if self.terminated:
            return []
        self._terminate()
        return [TransportFailed(self)]

    @abc.abstractmethod
    def _fire(self, timer: Timer, now: float) -> list[Event]:
        """React to ``timer`` (already disarmed)."""

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._timers.clear()

    def _linger(self, timer: Timer, delay: float, now: float) -> None:
        """Wait ``delay`` for retransmissions, or end now on a reliable transport (§17)."""
        if self.reliable or delay <= 0:
            self._terminate()
        else:
            self._timers[timer] = now + delay

    def _next_interval(self) -> float:
        """Double the retransmit interval, capped at T2 (timers E and G)."""
        self._interval = min(2 * self._interval, self.t2)
        return self._interval


class ClientTransaction(Transaction):
    """A client transaction (§17.1): call :meth:`start`, then feed responses."""

    def __init__(
        self,
        request: Request,
        destination: Hashable,
        *,
        reliable: bool = False,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        super().__init__(request, destination, reliable=reliable, t1=t1, t2=t2, t4=t4)

    def start(self, now: float) -> list[Event]:
        """Send the request for the first time and arm the timers."""
        self._arm_start_timers(now)
        return [SendMessage(self.request, self.peer)]

    @abc.abstractmethod
    def receive_response(self, response: Response, now: float) -> list[Event]:
        """Feed a response matched to this transaction (§17.1.3)."""

    @abc.abstractmethod
    def _arm_start_timers(self, now: float) -> None:
        """Arm the retransmit and timeout timers of the first state."""


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 (Figure 5) with RFC 6026's Accepted state."""

    initial_state = State.CALLING

    def __init__(
        self,
        request: Request,
        destination: Hashable,
        *,
        reliable: bool = False,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        timer_d: float = TIMER_D,
    ) -> None:
        super().__init__(request, destination, reliable=reliable, t1=t1, t2=t2, t4=t4)
        self.timer_d = timer_d
        self._ack: Request | None = None

    def _arm_start_timers(self, now: float) -> None:
        if not self.reliable:
            self._timers[Timer.A] = now + self.t1
        self._timers[Timer.B] = now + 64 * self.t1

    def receive_response(self, response: Response, now: float) -> list[Event]:
        """Feed a response; a 300-699 final is ACKed here (§17.1.1.3)."""
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            self._timers.clear()
            if status < 200:
                self.state = State.PROCEEDING
                return [ResponseReceived(self, response)]
            if status < 300:
                self.state = State.ACCEPTED
                self._timers[Timer.M] = now + 64 * self.t1
                return [ResponseReceived(self, response)]
            self.state = State.COMPLETED
            self._ack = build_ack(self.request, response)
            events: list[Event] = [SendMessage(self._ack, self.peer), ResponseReceived(self, response)]
            self._linger(Timer.D, self.timer_d, now)
            return events
        if self.state is State.COMPLETED and status >= 300 and self._ack is not None:
            return [SendMessage(self._ack, self.peer)]
        if self.state is State.ACCEPTED and 200 <= status < 300:
            return [ResponseReceived(self, response)]
        return []

    def _fire(self, timer: Timer, now: float) -> list[Event]:
        if timer is Timer.A:
            # §17.1.1.2: A doubles each time, with no T2 cap for INVITE.
            self._interval *= 2
            self._timers[Timer.A] = now + self._interval
            return [SendMessage(self.request, self.peer)]
        self._terminate()
        if timer is Timer.B:
            return [TransactionTimedOut(self)]
        return []  # D or M


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (Figure 6)."""

    initial_state = State.TRYING

    def _arm_start_timers(self, now: float) -> None:
        if not self.reliable:
            self._timers[Timer.E] = now + self.t1
        self._timers[Timer.F] = now + 64 * self.t1

    def receive_response(self, response: Response, now: float) -> list[Event]:
        """Feed a response; retransmissions are absorbed once Completed."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._timers.clear()
            self._linger(Timer.K, self.t4, now)
        return [ResponseReceived(self, response)]

    def _fire(self, timer: Timer, now: float) -> list[Event]:
        if timer is Timer.E:
            # §17.1.2.2: doubling up to T2 while Trying, every T2 in Proceeding.
            interval = self.t2 if self.state is State.PROCEEDING else self._next_interval()
            self._timers[Timer.E] = now + interval
            return [SendMessage(self.request, self.peer)]
        self._terminate()
        if timer is Timer.F:
            return [TransactionTimedOut(self)]
        return []  # K


class ServerTransaction(Transaction):
    """A server transaction (§17.2), created when its request arrives at ``now``."""

    def __init__(
        self,
        request: Request,
        source: Hashable,
        now: float,
        *,
        reliable: bool = False,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        super().__init__(request, source, reliable=reliable, t1=t1, t2=t2, t4=t4)
        #: The last response sent, re-sent for request retransmissions.
        self.last_response: Response | None = None

    def receive_request(self, now: float) -> list[Event]:
        """A retransmission of the request: answer it with the last response again.

        §17.2.1 (Proceeding, Completed) and §17.2.2 (Proceeding, Completed);
        absorbed in every other state.
        """
        if self.state in (State.PROCEEDING, State.COMPLETED):
            return self._resend_last()
        return []

    @abc.abstractmethod
    def send_response(self, response: Response, now: float) -> list[Event]:
        """The TU answers the request."""

    def _resend_last(self) -> list[Event]:
        return [] if self.last_response is None else [SendMessage(self.last_response, self.peer)]

    def _refuse(self, response: Response) -> TransactionUsageError:
        return TransactionUsageError(
            f"cannot send {response.status} on {self.request.method} transaction in state {self.state.value}"
        )


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 (Figure 7) with RFC 6026's Accepted state."""

    initial_state = State.PROCEEDING

    def __init__(
        self,
        request: Request,
        source: Hashable,
        now: float,
        *,
        reliable: bool = False,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        trying_delay: float = TRYING_DELAY,
    ) -> None:
        super().__init__(request, source, now, reliable=reliable, t1=t1, t2=t2, t4=t4)
        self._timers[Timer.TRYING] = now + trying_delay

    def send_response(self, response: Response, now: float) -> list[Event]:
        """Send a provisional or final response from the TU.

        In Accepted, only the TU's retransmissions of its 2xx pass (RFC 6026 §7.1).
        """
        status = response.status
        if self.state is State.ACCEPTED and 200 <= status < 300:
            self.last_response = response
            return [SendMessage(response, self.peer)]
        if self.state is not State.PROCEEDING:
            raise self._refuse(response)
        self.last_response = response
        self._timers.pop(Timer.TRYING, None)
        if 200 <= status < 300:
            self.state = State.ACCEPTED
            self._timers[Timer.L] = now + 64 * self.t1
        elif status >= 300:
            self.state = State.COMPLETED
            if not self.reliable:
                self._timers[Timer.G] = now + self.t1
            self._timers[Timer.H] = now + 64 * self.t1
        return [SendMessage(response, self.peer)]

    def receive_ack(self, ack: Request, now: float) -> list[Event]:
        """An ACK matched to this transaction (§17.2.3).

        Completed: the ACK for our 300-699, so stop G and H (Confirmed, then
        I). Accepted: the ACK for the TU's 2xx, which goes to the TU (RFC
        6026 §7.1). Otherwise absorbed.
        """
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._timers.clear()
            self._linger(Timer.I, self.t4, now)
        elif self.state is State.ACCEPTED:
            return [AckReceived(ack, self.peer, self)]
        return []

    def _fire(self, timer: Timer, now: float) -> list[Event]:
        if timer is Timer.TRYING:
            self.last_response = self._trying()
            return [SendMessage(self.last_response, self.peer)]
        if timer is Timer.G:
            self._timers[Timer.G] = now + self._next_interval()
            return self._resend_last()
        self._terminate()
        if timer is Timer.H:
            return [TransactionTimedOut(self)]
        return []  # I or L

    def _trying(self) -> Response:
        """100 Trying, with the request's Timestamp copied (§8.2.6.1)."""
        trying = make_response(self.request, 100)
        timestamp = self.request.headers.get("Timestamp")
        if timestamp is not None:
            trying.headers.add("Timestamp", timestamp)
        return trying


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 (Figure 8)."""

    initial_state = State.TRYING

    def send_response(self, response: Response, now: float) -> list[Event]:
        """Send a provisional or final response from the TU."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise self._refuse(response)
        self.last_response = response
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._linger(Timer.J, 64 * self.t1, now)
        return [SendMessage(response, self.peer)]

    def _fire(self, timer: Timer, now: float) -> list[Event]:
        self._terminate()  # J
        return []
