"""The B2BUA: each call owns the caller's leg, the legs it places, and a media bridge.

Rules of operation:

* A call starts from an INVITE the router accepted, with where it should
  go: one or more :class:`Destination` (every registered tab of a browser
  user: a fork, the first 2xx wins and the rest are cancelled), or
  :data:`ECHO`, which answers at once and loops the caller's own audio
  back through the relay (a UDP echo socket on the plain side).
* A SIP INVITE without SDP (delayed offer) gets a G.711 offer toward the
  browser; our 200 carries the offer to the SIP side, its ACK the answer.
* Whoever offers, the other side gets the translated offer
  (:class:`~telebridge.calls.call_media.CallMedia`); answers are translated
  back. 18x are passed to the caller (183 with the early-media answer).
  Failures are passed on when every fork failed: a 6xx first, then 486,
  then the first final response (RFC 3261 §16.7 in spirit). Nobody
  answering within ``ring_timeout`` gives the caller 408.
* Session timers (RFC 4028) follow :mod:`telebridge.calls.session_timer`:
  telebridge refreshes toward the PBX itself, expects a refreshing SIP side
  to refresh in time, and lets a browser refresh as it likes.
* In-dialog requests are answered by the side they arrive on: BYE ends
  the call on both sides; a re-INVITE or UPDATE from the SIP side is
  answered by us (hold, refresh, re-offer) and never reaches the browser;
  one from the browser is answered from what the SIP side already agreed.
* A browser's WebSocket closing cleanly (1000/1001) ends its calls at
  once. An abnormal drop parks them for ``grace`` seconds while media
  flows; the same browser (same ``+sip.instance``, or any in-dialog request
  of the same user on a new WebSocket) takes them back; otherwise they end.
* Every call ends exactly once: timers cancelled, ports released, indexes
  cleared, so the counts in ``/metrics`` return to zero.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Union

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from telebridge.calls.call_media import CallMedia, MediaRefused
from telebridge.calls.recording_policy import RecordingPolicy
from telebridge.calls.session_timer import SessionTimer, answer_headers, session_timer_of, supports_timer
from telebridge.calls.sip_legs import AnsweringLeg, PlacedLeg, via_for, with_body
from telebridge.metrics import Counters
from telebridge.sip.challenge import ChallengeAnswerer
from telebridge.sip.dialog import DialogError
from telebridge.sip.errors import SipParseError
from telebridge.sip.dtmf_info import DtmfInfoError, dtmf_from_info
from telebridge.sip.media_control import CONTENT_TYPE as MEDIA_CONTROL, PICTURE_FAST_UPDATE, asks_for_keyframe
from telebridge.sip.message import Request, Response, make_response, reason_phrase
from telebridge.sip.stack import ServerRequest, SipStack
from telebridge.sip.transport import Flow
from telebridge.media.recording import RecordingError
from telebridge.sip.uri import SipUri, parse_name_addr, parse_uri

log = Logger()

LOOP_HEADER = "X-Telebridge-Loop"


@dataclass(frozen=True)
class Destination:
    """Where a placed leg goes: its Request-URI, the flow to send on, and what speaks there."""

    uri: str
    to: str
    flow: Flow
    browser: bool
    instance: str | None = None
    # PBX mode: who the call is from at the PBX, how to answer its
    # challenges, and how long it may stay silent before it counts as down.
    from_: str | None = None
    answerer: ChallengeAnswerer | None = None
    reach_timeout: float | None = None
    session_expires: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    #: How a browser's digits reach this destination: RFC 4733 events, or SIP INFO.
    dtmf: str = "rfc4733"


class _Echo:
    """The ``echo`` extension."""


ECHO = _Echo()
Target = Union[_Echo, list[Destination]]


class CallState(enum.Enum):
    RINGING = "ringing"
    UP = "up"
    ENDED = "ended"


@dataclass
class CallSettings:
    """What an operator tunes (``[calls]`` in the config)."""

    ring_timeout: float = 60.0
    grace: float = 30.0
    media_timeout: float = 30.0


def loop_token(secret: bytes, call_id: str) -> str:
    """Marks an INVITE we send to ourselves (browser to browser) so it needs no digest."""
    return hmac.new(secret, call_id.encode(), hashlib.sha256).hexdigest()[:32]


class Call:
    """One call: the answering leg, the placed legs, the media between them."""

    def __init__(
        self,
        manager: CallManager,
        incoming: ServerRequest,
        caller_is_browser: bool,
        caller_instance: str | None,
        target: Target,
    ) -> None:
        self.manager = manager
        self.caller_is_browser = caller_is_browser
        self.caller_instance = caller_instance
        self.target = target
        self.state = CallState.RINGING
        self.answering = AnsweringLeg(manager.stack, incoming, manager.clock, lambda: self.end("no ACK for our 200"))
        self.forks: list[PlacedLeg] = []
        self.winner: PlacedLeg | None = None
        self.callee_instances: dict[PlacedLeg, str | None] = {}
        self.dtmf_modes: dict[PlacedLeg, str] = {}
        self.media = manager.new_media(lambda reason: self.end(reason))
        self.id = incoming.request.call_id
        self._timers: dict[str, DelayedCall] = {}
        self._session: SessionTimer | None = None  # a SIP side refreshes this session

    # -- set-up --------------------------------------------------------------------

    def start(self) -> None:
        body = self.answering.invite.body
        if not body and self.caller_is_browser:
            # Browsers always offer; an empty INVITE from one is broken.
            self._refuse(488, "Not Acceptable Here (an offer in the INVITE is required)")
            return
        try:
            if self.caller_is_browser:
                transports = () if isinstance(self.target, _Echo) else tuple(d.flow.transport_name for d in self.target)
                offer = self.media.offer_from_browser(body, transports)
            elif body:
                offer = self.media.offer_from_sip(body)
            else:
                offer = self.media.offer_for_delayed_offer()
        except MediaRefused as e:
            self._refuse(e.status, f"{_reason(e.status)} ({e.reason})")
            return
        if isinstance(self.target, _Echo):
            self._answer_echo(offer)
            return
        self._arm("ring", self.manager.settings.ring_timeout, self._no_answer)
        caller = self.answering.invite
        max_forwards = max(0, int(caller.headers.get("Max-Forwards") or 70) - 1)
        for destination in self.target:
            leg = PlacedLeg(
                self.manager.stack,
                destination.flow,
                destination.uri,
                from_=destination.from_ or _without_tag(caller.headers.get("From") or ""),
                to=destination.to,
                body=offer,
                on_response=self._fork_response,
                max_forwards=max_forwards,
                extra_headers=destination.extra_headers,
                answerer=destination.answerer,
                session_expires=destination.session_expires,
            )
            if self.manager.loop_secret is not None and self.caller_is_browser and destination.browser:
                leg.invite.headers.add(LOOP_HEADER, loop_token(self.manager.loop_secret, leg.call_id))
            self.forks.append(leg)
            self.callee_instances[leg] = destination.instance
            self.dtmf_modes[leg] = destination.dtmf
            self.manager.index(leg.key, self)
        reach = [d.reach_timeout for d in self.target if d.reach_timeout is not None]
        if reach:
            self._arm("reach", min(reach), self._unreached)
        for leg in self.forks:
            leg.send()

    def _answer_echo(self, plain_offer: bytes) -> None:
        try:
            answer = self.media.answer_from_sip(self.manager.echo_answer(plain_offer))
        except MediaRefused as e:
            self._refuse(e.status, f"{_reason(e.status)} ({e.reason})")
            return
        self._up(answer)

    def _refuse(self, status: int, reason: str) -> None:
        self.answering.reject(status, reason)
        self._finish(reason)

    def _up(self, answer: bytes, sip_answer: Response | None = None) -> None:
        self.state = CallState.UP
        self._cancel_timer("ring")
        invite = self.answering.invite
        self.answering.answer(answer, answer_headers(invite))
        self.manager.index(self.answering.key, self)
        self.media.answered()
        if self._digits_as_info:
            self.media.digits_as_info(self._info_digit)
        self.media.keyframes_by_info(lambda: self._sip_side_info(PICTURE_FAST_UPDATE, MEDIA_CONTROL))
        self._record_if_wanted(sip_answer)
        caller_timer = session_timer_of(invite)
        if caller_timer is not None and supports_timer(invite) and not self.caller_is_browser:
            self._expect_refreshes(caller_timer)
        self.manager.counters.inc("calls_answered_total")
        log.info("call {id} answered", id=self.id)

    def _record_if_wanted(self, sip_answer: Response | None) -> None:
        policy = self.manager.recording
        if policy is None:
            return
        invite = self.answering.invite
        caller, callee = _user_of(invite.from_.uri), _user_of(invite.uri)
        from_sip = [m for m in ([] if self.caller_is_browser else [invite]) + [sip_answer] if m is not None]
        if not policy.wanted(caller, callee, from_sip):
            return
        try:
            self.media.record(policy.folder, self.id, caller, callee, self.caller_is_browser)
        except RecordingError as e:
            # The call goes on unrecorded; the operator sees why.
            self.manager.counters.inc("recordings_failed_total")
            log.warn("call {id} not recorded: {error}", id=self.id, error=e)
            return
        self.manager.counters.inc("recordings_total")

    def _fork_response(self, leg: PlacedLeg, response: Response) -> None:
        status = response.status
        if all(f.heard_from or f.final is not None for f in self.forks):
            self._cancel_timer("reach")
        if self.state is CallState.ENDED:
            if 200 <= status < 300:
                leg.bye()
            return
        if status < 200:
            if status > 100 and self.state is CallState.RINGING:
                self._progress(response)
            return
        if status < 300:
            self._fork_answered(leg, response)
            return
        self.manager.unindex(leg.key)
        if self.state is CallState.RINGING and all(f.final is not None and f.final >= 300 for f in self.forks):
            self._refuse(_best_failure([f.final or 500 for f in self.forks]), response.reason)

    def _progress(self, response: Response) -> None:
        early = None
        if response.body and self.caller_is_browser:
            try:
                early = self.media.answer_from_sip(response.body)
            except MediaRefused:
                early = None
        self.answering.progress(183 if early else 180, early)

    def _fork_answered(self, leg: PlacedLeg, response: Response) -> None:
        if self.winner is not None and leg is not self.winner:
            leg.bye()  # a second fork answered too late (§13.2.2.4)
            return
        if self.winner is leg:
            return  # a 2xx retransmission, already ACKed
        self.winner = leg
        for other in self.forks:
            if other is not leg:
                other.cancel()
        try:
            if self.caller_is_browser:
                answer = self.media.answer_from_sip(response.body)
            else:
                answer = self.media.answer_from_browser(response.body)
        except MediaRefused as e:
            leg.bye()
            self._refuse(e.status if e.status != 400 else 488, f"{_reason(488)} ({e.reason})")
            return
        self._up(answer, response)
        if leg.session is not None:
            if leg.session.refresher == "uas":
                self._expect_refreshes(leg.session)
            else:
                self._refresh_every(leg, leg.session.refresh_after)

    # -- session timers (RFC 4028, see telebridge.calls.session_timer) -----------

    def _refresh_every(self, leg: PlacedLeg, delay: float) -> None:
        def refresh() -> None:
            leg.refresh(self.media.current_plain_sdp(), lambda: self.end("the PBX lost the session (refresh failed)"))
            self._arm("refresh", delay, refresh)

        self._arm("refresh", delay, refresh)

    def _expect_refreshes(self, timer: SessionTimer) -> None:
        self._session = timer
        self._arm("session", timer.expires_after, lambda: self.end("session timer expired (no refresh)"))

    def _unreached(self) -> None:
        """Forks that have not answered at all by now go to a PBX that is down."""
        for leg in self.forks:
            if not leg.heard_from and leg.final is None:
                leg.final = 503
                leg.cancel()
                self.manager.unindex(leg.key)
        if self.state is CallState.RINGING and all(f.final is not None and f.final >= 300 for f in self.forks):
            self._refuse(503, "Service Unavailable (the PBX did not answer)")

    def _no_answer(self) -> None:
        for leg in self.forks:
            leg.cancel()
        self._refuse(408, "Request Timeout (nobody answered)")

    # -- after set-up --------------------------------------------------------------

    def cancelled(self) -> None:
        """The caller sent CANCEL before an answer."""
        if self.state is CallState.RINGING:
            for leg in self.forks:
                leg.cancel()
            self._refuse(487, "Request Terminated")

    def in_dialog(self, incoming: ServerRequest) -> Response:
        """A request inside one of this call's dialogs."""
        request = incoming.request
        from_caller = request.to_tag == self.answering.tag
        leg = None if from_caller else self._leg_for(request)
        dialog = self.answering.dialog if from_caller else (leg.dialog if leg else None)
        if dialog is None:
            return make_response(request, 481)
        try:
            dialog.receive_request(request)
        except DialogError as e:
            return make_response(request, e.status or 400, f"{_reason(e.status or 400)} ({e.reason})")
        self._adopt(incoming.flow, from_caller, leg)
        method = request.method
        if method == "BYE":
            self.end(f"BYE from the {'caller' if from_caller else 'callee'}", skip_caller=from_caller, skip_callee=not from_caller)
            return make_response(request, 200)
        if method in ("INVITE", "UPDATE"):
            browser = from_caller == self.caller_is_browser
            if not browser and self._session is not None:
                self._expect_refreshes(session_timer_of(request) or self._session)
            return self._renegotiate(request, browser)
        if method == "INFO" and from_caller == self.caller_is_browser:
            return self._browser_info(request)
        if method == "INFO" and asks_for_keyframe(request.headers.get("Content-Type"), request.body):
            # RFC 5168: the SIP side's picture broke; the browser's camera is asked by RTCP.
            if self.media.keyframe_from_browser():
                self.manager.counters.inc("keyframe_requests_total", via="info")
            return make_response(request, 200)
        if method in ("INFO", "OPTIONS"):
            return make_response(request, 200)
        response = make_response(request, 405)
        response.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO")
        return response

    def _renegotiate(self, request: Request, browser: bool) -> Response:
        response = make_response(request, 200)
        for name, value in answer_headers(request):
            response.headers.add(name, value)
        if not request.body:
            return response  # a session refresh: nothing to negotiate
        try:
            answer = self.media.reoffer_from_browser(request.body) if browser else self.media.reoffer_from_sip(request.body)
        except MediaRefused as e:
            return make_response(request, 488, f"Not Acceptable Here ({e.reason})")
        tag_leg = self.answering if request.to_tag == self.answering.tag else self._leg_for(request)
        if tag_leg is not None:
            response.headers.add("Contact", tag_leg.contact if isinstance(tag_leg, AnsweringLeg) else _contact_of(tag_leg))
        with_body(response, answer)
        if browser:
            self._pass_direction_on(request.body)
        return response

    @property
    def _digits_as_info(self) -> bool:
        """Whether the SIP side was configured to get a browser's digits as SIP INFO."""
        return self.caller_is_browser and self.winner is not None and self.dtmf_modes.get(self.winner) == "info"

    def _browser_info(self, request: Request) -> Response:
        """A browser's DTMF INFO (JsSIP's default) becomes RFC 4733 events toward
        the SIP side, or is passed on as INFO when that side has no telephone-event
        or was configured to take INFO."""
        try:
            dtmf = dtmf_from_info(request.headers.get("Content-Type"), request.body)
        except DtmfInfoError as e:
            return make_response(request, 400, f"Bad Request ({e})")
        if dtmf is None:
            return make_response(request, 200)
        digit, duration_ms = dtmf
        if self._digits_as_info or not self.media.send_dtmf(digit, duration_ms):
            self._sip_side_info(request.body, request.headers.get("Content-Type"))
        self.manager.counters.inc("dtmf_digits_total", via="info")
        return make_response(request, 200)

    def _info_digit(self, digit: str, duration_ms: int) -> None:
        """A browser's RFC 4733 digit, sent to the SIP side as INFO (application/dtmf-relay)."""
        self._sip_side_info(f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode(), "application/dtmf-relay")
        self.manager.counters.inc("dtmf_digits_total", via="rfc4733")

    def _sip_side_info(self, body: bytes, content_type: str | None) -> None:
        leg = self.winner if self.caller_is_browser else self.answering
        if leg is None or leg.dialog is None or self.state is not CallState.UP:
            return
        info = leg.dialog.new_request("INFO", via_for(leg.flow), body=body, content_type=content_type)
        self.manager.stack.send_request(info, leg.flow, lambda response: None)

    def _pass_direction_on(self, browser_offer: bytes) -> None:
        """A browser's hold or resume goes on to the SIP side (so a PBX plays music on hold)."""
        reoffer = self.media.sip_reoffer(browser_offer)
        if reoffer is None:
            return

        def answered(response: Response) -> None:
            if 200 <= response.status < 300 and response.body:
                self.media.sip_reanswer(response.body)
            elif response.status in (408, 481):
                self.end(f"the SIP side lost the call ({response.status} to a re-INVITE)")

        if self.caller_is_browser:
            if self.winner is not None:
                self.winner.reinvite(reoffer, answered)
        else:
            self.answering.reinvite(reoffer, answered)

    def acked(self, ack: Request) -> None:
        if ack.to_tag != self.answering.tag:
            return
        self.answering.acked()
        if self.media.delayed and self.state is CallState.UP:
            # A delayed-offer call: the SIP side's answer is in its ACK (RFC 3261 §13.2.1).
            try:
                if not ack.body:
                    raise MediaRefused("the ACK carried no answer to our offer")
                self.media.answer_in_ack(ack.body)
            except MediaRefused as e:
                self.end(f"no usable answer in the ACK: {e.reason}")

    def stray_response(self, response: Response) -> None:
        """A 2xx retransmission from a callee: ACK it again (§13.2.2.4)."""
        leg = self._leg_for_response(response)
        if leg is not None and 200 <= response.status < 300:
            leg.ack()
            if leg is not self.winner or self.state is CallState.ENDED:
                leg.bye()

    def _leg_for(self, request: Request) -> PlacedLeg | None:
        for leg in self.forks:
            if leg.call_id == request.call_id and leg.tag == request.to_tag:
                return leg
        return None

    def _leg_for_response(self, response: Response) -> PlacedLeg | None:
        for leg in self.forks:
            if leg.call_id == response.call_id and leg.tag == response.from_tag:
                return leg
        return None

    # -- WebSocket drops -----------------------------------------------------------

    def browser_flows(self) -> list[tuple[Flow, str | None]]:
        """(flow, instance) of each side that is a browser."""
        sides = []
        if self.caller_is_browser:
            sides.append((self.answering.flow, self.caller_instance))
        for leg in self.forks:
            if leg.flow.transport_name in ("WS", "WSS"):
                sides.append((leg.flow, self.callee_instances.get(leg)))
        return sides

    def flow_lost(self, flow: Flow, clean: bool) -> None:
        """A browser side's WebSocket closed."""
        if self.state is CallState.RINGING and self.caller_is_browser and self.answering.flow is flow:
            self.cancelled()
            return
        if self.state is CallState.RINGING:
            # A ringing tab went away: that fork is over, the others ring on.
            for leg in self.forks:
                if leg.flow is flow and leg.final is None:
                    leg.final = 480
            if self.forks and all(f.final is not None for f in self.forks):
                self._refuse(480, "Temporarily Unavailable (the browser went away)")
            return
        if clean:
            self.end("the browser closed its page", skip_caller=self.answering.flow is flow, skip_callee=self.winner is not None and self.winner.flow is flow)
            return
        log.info("call {id}: browser WebSocket dropped, parked for {grace} s", id=self.id, grace=self.manager.settings.grace)
        self._arm("grace", self.manager.settings.grace, lambda: self.end("the browser did not come back"))

    def reattach(self, old: Flow | None, instance: str | None, new: Flow) -> bool:
        """A browser came back on ``new``: its sides move there. True if any did."""
        moved = False
        if self.caller_is_browser and (self.answering.flow is old or (instance and instance == self.caller_instance)):
            self.answering.flow = new
            moved = True
        for leg in self.forks:
            if leg.flow is old or (instance and instance == self.callee_instances.get(leg)):
                leg.flow = new
                moved = True
        if moved:
            self._cancel_timer("grace")
        return moved

    def _adopt(self, flow: Flow, from_caller: bool, leg: PlacedLeg | None) -> None:
        """An in-dialog request on a new WebSocket of the same browser: follow it there."""
        if flow.transport_name not in ("WS", "WSS"):
            return
        current = self.answering.flow if from_caller else (leg.flow if leg else None)
        if current is not None and current is not flow and getattr(current, "identity", None) == getattr(flow, "identity", None):
            if from_caller:
                self.answering.flow = flow
            elif leg is not None:
                leg.flow = flow
            self._cancel_timer("grace")

    # -- the end -------------------------------------------------------------------

    def end(self, reason: str, skip_caller: bool = False, skip_callee: bool = False) -> None:
        """Tear the call down on both sides (BYE or CANCEL) unless a side already ended it."""
        if self.state is CallState.ENDED:
            return
        if self.state is CallState.RINGING:
            for leg in self.forks:
                leg.cancel()
            self.answering.reject(480 if not reason.startswith("BYE") else 487, f"Temporarily Unavailable ({reason})")
        else:
            if not skip_caller:
                self.answering.bye()
            if not skip_callee and self.winner is not None:
                self.winner.bye()
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        for name in list(self._timers):
            self._cancel_timer(name)
        self.answering.stop_timers()
        self.media.close(reason)
        self.manager.forget(self)
        log.info("call {id} ended: {reason}", id=self.id, reason=reason)
        self._report_quality()

    def _report_quality(self) -> None:
        """One log line and the /metrics counters for the media of a call that had any."""
        streams = [s for s in self.media.quality() if s.packets_in or s.packets_out]
        if not streams:
            return
        log.info("call {id} quality: {streams}", id=self.id, streams="; ".join(str(s) for s in streams))
        counters = self.manager.counters
        for s in streams:
            counters.inc("media_packets_received_total", s.packets_in, leg=s.leg, kind=s.kind)
            counters.inc("media_packets_lost_total", max(s.lost, 0), leg=s.leg, kind=s.kind)
            if s.poor:
                counters.inc("media_streams_poor_total", leg=s.leg, kind=s.kind)

    def _arm(self, name: str, delay: float, action: Callable[[], None]) -> None:
        self._cancel_timer(name)

        def fire() -> None:
            self._timers.pop(name, None)
            action()

        self._timers[name] = self.manager.clock.callLater(delay, fire)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    @property
    def timer_count(self) -> int:
        return len(self._timers) + (1 if self.answering._retransmit is not None else 0)


class CallManager:
    """Every live call, and the indexes that route SIP messages to them."""

    def __init__(
        self,
        stack: SipStack | None,
        clock: IReactorTime,
        new_media: Callable[[Callable[[str], None]], CallMedia],
        echo_answer: Callable[[bytes], bytes],
        counters: Counters,
        settings: CallSettings,
        loop_secret: bytes | None = None,
        recording: RecordingPolicy | None = None,
    ) -> None:
        self.stack: SipStack = stack  # type: ignore[assignment]
        self.recording = recording
        self.clock = clock
        self.new_media = new_media
        self.echo_answer = echo_answer
        self.counters = counters
        self.settings = settings
        self.loop_secret = loop_secret
        self.calls: set[Call] = set()
        self._by_key: dict[tuple[str, str], Call] = {}
        self._by_invite: dict[ServerRequest, Call] = {}
        counters.describe("media_packets_received_total", "RTP packets received in ended calls, by leg and kind")
        counters.describe("media_packets_lost_total", "RTP packets lost in ended calls (RFC 3550 A.3), by leg and kind")
        counters.describe("media_streams_poor_total", "streams of ended calls with over 3 % loss or 40 ms jitter")

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def timers(self) -> int:
        """Live call timers (ring, grace, 2xx retransmission): zero when idle."""
        return sum(call.timer_count for call in self.calls)

    def place(self, incoming: ServerRequest, caller_is_browser: bool, caller_instance: str | None, target: Target) -> None:
        """Start a call for an INVITE the router accepted."""
        call = Call(self, incoming, caller_is_browser, caller_instance, target)
        self.calls.add(call)
        self._by_invite[incoming] = call
        self.counters.inc("calls_total")
        call.start()

    def index(self, key: tuple[str, str], call: Call) -> None:
        self._by_key[key] = call

    def unindex(self, key: tuple[str, str]) -> None:
        self._by_key.pop(key, None)

    def forget(self, call: Call) -> None:
        self.calls.discard(call)
        for key in [k for k, c in self._by_key.items() if c is call]:
            del self._by_key[key]
        for incoming in [i for i, c in self._by_invite.items() if c is call]:
            del self._by_invite[incoming]

    def find(self, request_or_response: Request | Response) -> Call | None:
        """The call a dialog message belongs to, by (Call-ID, our tag)."""
        message = request_or_response
        ours = message.to_tag if isinstance(message, Request) else message.from_tag
        return self._by_key.get((message.call_id, ours or ""))

    def in_dialog(self, incoming: ServerRequest) -> Response:
        """BYE, re-INVITE, UPDATE, INFO... for a live call, else 481."""
        call = self.find(incoming.request)
        if call is None:
            return make_response(incoming.request, 481)
        return call.in_dialog(incoming)

    def ack_received(self, ack: Request) -> None:
        call = self.find(ack)
        if call is not None:
            call.acked(ack)

    def cancel_received(self, incoming: ServerRequest) -> bool:
        call = self._by_invite.get(incoming)
        if call is None:
            return False
        call.cancelled()
        return True

    def stray_response(self, response: Response) -> None:
        call = self.find(response)
        if call is not None:
            call.stray_response(response)

    def flow_closed(self, flow: Flow, clean: bool) -> None:
        """A browser's WebSocket ended: clean closes end its calls, drops park them."""
        for call in list(self.calls):
            if any(side is flow for side, _ in call.browser_flows()):
                call.flow_lost(flow, clean)

    def browser_returned(self, instance: str | None, flow: Flow) -> None:
        """A browser registered again (same instance-id) on a new WebSocket."""
        if instance is None:
            return
        for call in list(self.calls):
            if call.reattach(None, instance, flow):
                log.info("call {id} resumed on a new WebSocket", id=call.id)

    def end_all(self, reason: str) -> None:
        for call in list(self.calls):
            call.end(reason)

    def calls_of(self, flows: Iterable[Flow]) -> list[Call]:
        wanted = set(map(id, flows))
        return [c for c in self.calls if any(id(f) in wanted for f, _ in c.browser_flows())]


def _best_failure(statuses: list[int]) -> int:
    for status in statuses:
        if status >= 600:
            return status
    if 486 in statuses:
        return 486
    return statuses[0] if statuses else 500


def _reason(status: int) -> str:
    return reason_phrase(status)


def _without_tag(value: str) -> str:
    name_addr = parse_name_addr(value)
    return str(replace(name_addr, params=name_addr.params.without("tag")))


def _contact_of(leg: PlacedLeg) -> str:
    return leg.invite.headers.get("Contact") or ""


def _user_of(uri: SipUri | str) -> str:
    """The user part of a URI ("" when it has none or does not parse)."""
    try:
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
    except SipParseError:
        return ""
    return parsed.user or ""
