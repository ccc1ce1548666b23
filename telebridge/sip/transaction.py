"""The four SIP transaction state machines (RFC 3261 §17, RFC 6026).

Rules of operation:

* Sans-I/O: every input method takes ``now`` and returns a list of output
  events; :meth:`get_timer` gives the next deadline (absolute time) and
  :meth:`handle_timer` runs what is due. Nothing here reads a clock.
* Timers use T1, T2, T4 given to the constructor (RFC defaults 0.5, 4, 5 s).
  On a reliable transport the retransmission timers (A, E, G) are not
  used and the wait-for-retransmissions timers (D, I, J, K) are zero (§17).
* INVITE client (§17.1.1): A retransmits (doubling), B gives up after
  64*T1 in Calling; a non-2xx final response is ACKed here (§17.1.1.3) and
  D absorbs its retransmissions; a 2xx moves to Accepted (RFC 6026 §7.2)
  for 64*T1 (timer M) so that 2xx retransmissions still reach the TU.
* Non-INVITE client (§17.1.2): E retransmits (doubling to T2), F gives up
  after 64*T1, K absorbs response retransmissions.
* INVITE server (§17.2.1): sends 100 Trying itself if the TU is silent for
  200 ms; a non-2xx final is retransmitted on G until the ACK, H gives up;
  I absorbs ACK retransmissions. A 2xx moves to Accepted (RFC 6026 §7.1)
  for 64*T1 (timer L): INVITE retransmissions are absorbed and ACKs go to
  the TU. (Retransmitting the 2xx itself is the TU's job, §13.3.1.4.)
* Non-INVITE server (§17.2.2): a retransmitted request gets the last
  response again; J keeps the final response for 64*T1 on UDP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Hashable, Union

from telebridge.sip.message import Headers, Request, Response, make_response

T1, T2, T4 = 0.5, 4.0, 5.0
TRYING_DELAY = 0.2  # §17.2.1: send 100 if the TU has not answered in 200 ms


class State(enum.Enum):
    """Transaction states (RFC 3261 §17 figures 5-8, RFC 6026 Accepted)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Write ``message`` to ``destination`` (a flow or address the caller gave)."""

    message: Request | Response
    destination: Hashable


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU of a client transaction."""

    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B, F or H fired: for a client, as good as a 408 (§8.1.3.1)."""

    transaction: ClientTransaction | ServerTransaction


Event = Union[SendMessage, ResponseReceived, TransactionTimedOut]


def same_branch_request(request: Request, method: str, to: str) -> Request:
    """A request on ``request``'s branch: its ACK (§17.1.1.3) or CANCEL (§9.1).

    Both copy the top Via, Route, From, Call-ID and the CSeq number; only
    the method and (for an ACK) the To header differ.
    """
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


class _Transaction:
    """What both kinds share: the request, and timer bookkeeping."""

    def __init__(self, request: Request, reliable: bool, t1: float, t2: float, t4: float) -> None:
        self.request = request
        self.invite = request.method == "INVITE"
        self.reliable = reliable
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.timers: dict[str, float] = {}
        self.state = State.TRYING
        self.last_response: Response | None = None
        self._interval = t1

    @property
    def terminated(self) -> bool:
        """True once the transaction can be forgotten."""
        return self.state is State.TERMINATED

    def get_timer(self) -> float | None:
        """The earliest pending deadline, or ``None``."""
        return min(self.timers.values()) if self.timers else None

    def _due(self, now: float) -> list[str]:
        due = sorted((t, name) for name, t in self.timers.items() if t <= now)
        return [name for _, name in due]

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self.timers.clear()

    def _wait(self, name: str, unreliable_delay: float, now: float) -> None:
        """Arm a wait-for-retransmissions timer (zero on reliable transports)."""
        self.timers[name] = now + (0.0 if self.reliable else unreliable_delay)


class ClientTransaction(_Transaction):
    """INVITE or non-INVITE client transaction (§17.1)."""

    def __init__(
        self,
        request: Request,
        destination: Hashable,
        reliable: bool,
        now: float,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        super().__init__(request, reliable, t1, t2, t4)
        self.destination = destination
        self.state = State.CALLING if self.invite else State.TRYING
        self.cancel_pending = False
        if not reliable:
            self.timers["A" if self.invite else "E"] = now + t1
        self.timers["B" if self.invite else "F"] = now + 64 * t1

    def start(self) -> list[Event]:
        """The first transmission."""
        return [SendMessage(self.request, self.destination)]

    def receive_response(self, response: Response, now: float) -> list[Event]:
        """Feed a response matched to this transaction (§17.1.3)."""
        status = response.status
        events: list[Event] = []
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self.last_response = response
            if status < 200:
                self.state = State.PROCEEDING
                if self.invite:
                    self.timers.pop("A", None)
                    self.timers.pop("B", None)
                events.append(ResponseReceived(self, response))
            elif self.invite and status < 300:
                self.state = State.ACCEPTED
                self.timers.clear()
                self.timers["M"] = now + 64 * self.t1
                events.append(ResponseReceived(self, response))
            else:
                self.state = State.COMPLETED
                self.timers.clear()
                if self.invite:
                    events.append(SendMessage(self.ack_for(response), self.destination))
                    self._wait("D", 32.0, now)
                else:
                    self._wait("K", self.t4, now)
                events.append(ResponseReceived(self, response))
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            events.append(ResponseReceived(self, response))
        elif self.state is State.COMPLETED and self.invite and status >= 300:
            events.append(SendMessage(self.ack_for(response), self.destination))
        return events

    def ack_for(self, response: Response) -> Request:
        """The ACK for a non-2xx final response (§17.1.1.3): same branch, To from the response."""
        return same_branch_request(self.request, "ACK", response.headers.get("To") or "")

    def handle_timer(self, now: float) -> list[Event]:
        """Run every timer that is due."""
        events: list[Event] = []
        for name in self._due(now):
            if name not in self.timers:
                continue
            del self.timers[name]
            if name in ("A", "E"):
                # §17.1.1.2: A doubles; §17.1.2.2: E doubles up to T2, and is
                # T2 once a provisional response has arrived.
                if name == "A":
                    self._interval *= 2
                elif self.state is State.PROCEEDING:
                    self._interval = self.t2
                else:
                    self._interval = min(2 * self._interval, self.t2)
                self.timers[name] = now + self._interval
                events.append(SendMessage(self.request, self.destination))
            elif name in ("B", "F"):
                self._terminate()
                events.append(TransactionTimedOut(self))
            else:  # D, K, M
                self._terminate()
        return events


class ServerTransaction(_Transaction):
    """INVITE or non-INVITE server transaction (§17.2)."""

    def __init__(
        self,
        request: Request,
        source: Hashable,
        reliable: bool,
        now: float,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        super().__init__(request, reliable, t1, t2, t4)
        self.source = source
        self.state = State.PROCEEDING if self.invite else State.TRYING
        if self.invite:
            self.timers["Trying"] = now + TRYING_DELAY

    def receive_request(self, now: float) -> list[Event]:
        """A retransmission of the request: resend the last response (§17.2.1, §17.2.2)."""
        if self.last_response is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            return [SendMessage(self.last_response, self.source)]
        return []

    def receive_ack(self, now: float) -> list[Event]:
        """An ACK for our non-2xx final response: stop retransmitting (§17.2.1)."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self.timers.clear()
            self._wait("I", self.t4, now)
        return []

    def send_response(self, response: Response, now: float) -> list[Event]:
        """The TU answers; returns what to send."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = response
        self.timers.pop("Trying", None)
        status = response.status
        if status < 200:
            self.state = State.PROCEEDING
        elif self.invite and status < 300:
            self.state = State.ACCEPTED
            self.timers["L"] = now + 64 * self.t1
        else:
            self.state = State.COMPLETED
            if self.invite:
                if not self.reliable:
                    self.timers["G"] = now + self.t1
                self.timers["H"] = now + 64 * self.t1
            else:
                self._wait("J", 64 * self.t1, now)
        return [SendMessage(response, self.source)]

    def handle_timer(self, now: float) -> list[Event]:
        """Run every timer that is due."""
        events: list[Event] = []
        for name in self._due(now):
            if name not in self.timers:
                continue
            del self.timers[name]
            if name == "Trying":
                trying = make_response(self.request, 100)
                self.last_response = trying
                events.append(SendMessage(trying, self.source))
            elif name == "G":
                self._interval = min(2 * self._interval, self.t2)
                self.timers["G"] = now + self._interval
                if self.last_response is not None:
                    events.append(SendMessage(self.last_response, self.source))
            elif name == "H":
                self._terminate()
                events.append(TransactionTimedOut(self))
            else:  # I, J, L
                self._terminate()
        return events
