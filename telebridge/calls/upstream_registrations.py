"""Browser users registered to the PBX by telebridge (PBX mode, RFC 3261 §10.2).

Rules of operation:

* One upstream registration per user, however many tabs the user has:
  the PBX sees one Contact, telebridge's own (``sip:USER@our-address``),
  never a browser's. Its INVITEs for the user come to telebridge, which
  rings every tab.
* :meth:`UpstreamRegistrations.ensure` registers the user if it is not
  registered yet and tells the caller how it went: a browser's REGISTER
  gets 200 only after the PBX said 200.
* The PBX's 401/407 is answered with the user's PBX credentials; a
  second challenge means they are wrong, and the browser gets 403. 423
  is retried once with the PBX's Min-Expires.
* A PBX that does not answer at all within ``[upstream] timeout`` counts
  as down: 503 for the browser. Late responses to an abandoned attempt
  are ignored.
* telebridge refreshes at half of what the PBX granted, on its own
  schedule, whatever the browsers do. A failed refresh is retried every
  ``RETRY`` seconds while the user still has tabs.
* :meth:`release` (the user's last tab went away) un-registers upstream
  (Expires: 0) and forgets the user: no timer or object is left.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from telebridge.calls.sip_legs import contact_for, via_for
from telebridge.calls.upstream import Upstream
from telebridge.metrics import Counters
from telebridge.sip.challenge import ChallengeAnswerer
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Headers, Request, Response
from telebridge.sip.stack import SipStack
from telebridge.sip.transport import Flow
from telebridge.sip.uri import format_host, parse_name_addr

log = Logger()

RETRY = 30.0


@dataclass(frozen=True)
class Outcome:
    """What the PBX said, as the status and reason to give the browser."""

    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == 200


class State(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass
class _Registration:
    user: str
    call_id: str = field(default_factory=lambda: secrets.token_hex(12))
    tag: str = field(default_factory=lambda: secrets.token_hex(8))
    cseq: int = 0
    state: State = State.REGISTERING
    bound: bool = False  # the PBX accepted a REGISTER at least once
    attempt: int = 0
    waiters: list[defer.Deferred[Outcome]] = field(default_factory=list)
    timer: DelayedCall | None = None
    deadline: DelayedCall | None = None

    def cancel_timers(self) -> None:
        for timer in (self.timer, self.deadline):
            if timer is not None and timer.active():
                timer.cancel()
        self.timer = self.deadline = None


class UpstreamRegistrations:
    """Every user telebridge keeps registered to the PBX."""

    def __init__(self, stack: SipStack | None, upstream: Upstream, clock: IReactorTime, counters: Counters) -> None:
        self.stack: SipStack = stack  # type: ignore[assignment]
        self.upstream = upstream
        self.clock = clock
        self.counters = counters
        self._users: dict[str, _Registration] = {}

    def __len__(self) -> int:
        """Users registered upstream right now."""
        return sum(1 for r in self._users.values() if r.state is State.REGISTERED)

    @property
    def timers(self) -> int:
        return sum((r.timer is not None) + (r.deadline is not None) for r in self._users.values())

    def tracked(self) -> int:
        """Users with any upstream state (registered, trying, or retrying)."""
        return len(self._users)

    def ensure(self, user: str) -> defer.Deferred[Outcome]:
        """Register ``user`` upstream unless it is; fires with how the PBX answered."""
        registration = self._users.get(user)
        if registration is not None and registration.state is State.REGISTERED:
            return defer.succeed(Outcome(200, "OK"))
        waiter: defer.Deferred[Outcome] = defer.Deferred()
        if registration is None:
            registration = self._users[user] = _Registration(user)
        registration.waiters.append(waiter)
        if registration.state is not State.REGISTERING or registration.attempt == 0:
            self._send(registration, self.upstream.config.register_expires)
        return waiter

    def release(self, user: str) -> None:
        """The user has no tab left: un-register upstream and forget it."""
        registration = self._users.pop(user, None)
        if registration is None:
            return
        registration.cancel_timers()
        self._settle(registration, Outcome(480, "Temporarily Unavailable (unregistered)"))
        if registration.bound:
            self._send(registration, 0, forget=True)

    def release_all(self) -> None:
        for user in list(self._users):
            self.release(user)

    # -- one REGISTER sequence ------------------------------------------------------

    def _send(self, registration: _Registration, expires: int, forget: bool = False) -> None:
        """Start a REGISTER sequence (challenges and 423 included) for ``expires`` seconds."""
        if not forget:
            registration.state = State.REGISTERING
            registration.cancel_timers()
        registration.attempt += 1
        attempt = _Attempt(self, registration, registration.attempt, expires, forget)
        if not forget:
            registration.deadline = self.clock.callLater(self.upstream.timeout, self._silent, registration, attempt.number)
        user = registration.user

        def begin(answerer: ChallengeAnswerer | None) -> None:
            if answerer is None:
                attempt.fail(Outcome(403, f"Forbidden (no PBX account for {user})"))
                return
            attempt.answerer = answerer
            unreachable = Outcome(503, "Service Unavailable (the PBX cannot be reached)")
            self.upstream.flow().addCallbacks(attempt.start, lambda failure: attempt.fail(unreachable))

        def no_credentials(failure: Failure) -> None:
            log.warn("no PBX credentials for {user}: {why}", user=user, why=failure.getErrorMessage())
            attempt.fail(Outcome(503, "Service Unavailable (the account service did not answer)"))

        self.upstream.answerer_for(user).addCallbacks(begin, no_credentials)

    def _current(self, registration: _Registration, number: int) -> bool:
        """Whether attempt ``number`` still speaks for a live registration."""
        return registration.attempt == number and self._users.get(registration.user) is registration

    def _silent(self, registration: _Registration, number: int) -> None:
        registration.deadline = None
        if self._current(registration, number):
            registration.attempt += 1  # whatever arrives later is ignored
            self._failed(registration, Outcome(503, "Service Unavailable (the PBX did not answer)"))

    def _answered(self, registration: _Registration, response: Response, asked: int) -> None:
        if registration.deadline is not None and registration.deadline.active():
            registration.deadline.cancel()
        registration.deadline = None
        if 200 <= response.status < 300:
            granted = _granted_expires(response, registration.user, asked)
            registration.state = State.REGISTERED
            registration.bound = True
            self._schedule(registration, max(1.0, granted / 2))
            self.counters.inc("upstream_registers_total", result="ok")
            log.info("{user} registered to the PBX for {granted} s", user=registration.user, granted=granted)
            self._settle(registration, Outcome(200, "OK"))
            return
        self._failed(registration, _browser_outcome(response))

    def _failed(self, registration: _Registration, outcome: Outcome) -> None:
        if registration.deadline is not None and registration.deadline.active():
            registration.deadline.cancel()
        registration.deadline = None
        registration.state = State.FAILED
        self.counters.inc("upstream_registers_total", result=str(outcome.status))
        log.warn("registering {user} to the PBX failed: {status} {reason}", user=registration.user,
                 status=outcome.status, reason=outcome.reason)
        # Scheduled before the waiters hear of it: one of them may release the user.
        self._schedule(registration, RETRY)
        self._settle(registration, outcome)

    def _schedule(self, registration: _Registration, delay: float) -> None:
        if registration.timer is not None and registration.timer.active():
            registration.timer.cancel()

        def refresh() -> None:
            registration.timer = None
            self._send(registration, self.upstream.config.register_expires)

        registration.timer = self.clock.callLater(delay, refresh)

    @staticmethod
    def _settle(registration: _Registration, outcome: Outcome) -> None:
        waiters, registration.waiters = registration.waiters, []
        for waiter in waiters:
            waiter.callback(outcome)


class _Attempt:
    """One REGISTER and the retries it takes: credentials for a challenge, Min-Expires for a 423."""

    def __init__(self, owner: UpstreamRegistrations, registration: _Registration, number: int, expires: int, forget: bool) -> None:
        self.owner = owner
        self.registration = registration
        self.number = number
        self.expires = expires
        self.forget = forget
        self.answerer: ChallengeAnswerer | None = None
        self.interval_retried = False
        self.flow: Flow | None = None
        self.request: Request | None = None

    def start(self, flow: Flow) -> None:
        self.flow = flow
        self._transmit(self._request(self.expires))

    def fail(self, outcome: Outcome) -> None:
        """The REGISTER could not even be sent (no account, no way to the PBX)."""
        if not self.forget and self.owner._current(self.registration, self.number):
            self.owner._failed(self.registration, outcome)

    def _transmit(self, request: Request) -> None:
        assert self.flow is not None
        self.request = request
        self.owner.stack.send_request(request, self.flow, self._response)

    def _request(self, expires: int) -> Request:
        assert self.flow is not None
        registration, upstream = self.registration, self.owner.upstream
        registration.cseq += 1
        aor = upstream.aor(registration.user)
        headers = Headers()
        headers.add("Via", via_for(self.flow))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{aor}>;tag={registration.tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", registration.call_id)
        headers.add("CSeq", f"{registration.cseq} REGISTER")
        headers.add("Contact", contact_for(self.flow, registration.user))
        headers.add("Expires", str(expires))
        headers.add("User-Agent", "telebridge")
        return Request(headers=headers, method="REGISTER", uri=f"sip:{format_host(upstream.config.domain)}")

    def _response(self, response: Response) -> None:
        if response.status < 200:
            return
        if not self.forget and not self.owner._current(self.registration, self.number):
            return  # abandoned after the timeout, or the user was released meanwhile
        assert self.request is not None
        retry = self.answerer.retry(self.request, response) if self.answerer is not None else None
        if retry is not None:
            self.registration.cseq += 1
            self._transmit(retry)
            return
        if self.forget:
            return
        minimum = _int(response.headers.get("Min-Expires")) if response.status == 423 else None
        if minimum and not self.interval_retried:
            self.interval_retried = True
            self.expires = minimum
            self._transmit(self._request(minimum))
            return
        self.owner._answered(self.registration, response, self.expires)


def _browser_outcome(response: Response) -> Outcome:
    """What a browser is told when the PBX refused or failed its registration."""
    if response.status in (401, 407, 403):
        return Outcome(403, "Forbidden (the PBX refused this user's credentials)")
    if response.status in (408, 503):
        return Outcome(503, f"Service Unavailable (PBX: {response.status} {response.reason})")
    if 400 <= response.status < 700:
        return Outcome(response.status, f"{response.reason} (from the PBX)")
    return Outcome(502, f"Bad Gateway (PBX answered {response.status})")


def _granted_expires(response: Response, user: str, asked: int) -> int:
    """The expiry the PBX granted our Contact (its expires param, else Expires, else what we asked)."""
    for value in response.headers.get_all("Contact"):
        try:
            contact = parse_name_addr(value)
        except SipParseError:
            continue
        if contact.uri.user == user:
            granted = _int(contact.params.get("expires"))
            if granted:
                return granted
    return _int(response.headers.get("Expires")) or asked


def _int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit() or len(text.strip()) > 9:
        return None
    return int(text.strip())
