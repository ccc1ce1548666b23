"""The two SIP sides of a B2BUA call: the leg we answer and the legs we place.

Each side is its own dialog (RFC 3261 §12) over one flow. These classes
build and send the messages; what a response or request *means* for the
call is :mod:`telebridge.calls.b2bua`'s business.

Rules of operation:

* :class:`AnsweringLeg` holds the caller's INVITE. Provisional responses
  carry our To tag; the 2xx confirms the dialog and, over an unreliable
  transport, is retransmitted (T1 doubling to T2) until the ACK arrives,
  for at most 64*T1 (§13.3.1.4); without an ACK the call is ended.
* :class:`PlacedLeg` sends an INVITE on a fresh Call-ID, ACKs every 2xx
  itself (a 2xx retransmission is ACKed again, §13.2.2.4), and can CANCEL
  while the INVITE is pending. Given a :class:`ChallengeAnswerer` (PBX
  mode), it answers a 401/407 by sending the INVITE again with
  credentials; the caller never sees the challenge.
* Requests we send in a dialog (BYE, re-INVITE answers) go over the flow
  the dialog lives on: for a browser that is its WebSocket, never its
  ``.invalid`` Contact host (RFC 7118, INTEROP.md).
"""

from __future__ import annotations

import secrets
from typing import Callable

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime

from telebridge.calls.session_timer import MIN_SE, SessionTimer, min_se_of, session_timer_of
from telebridge.sip.challenge import ChallengeAnswerer, next_in_sequence
from telebridge.sip.dialog import Dialog, DialogState
from telebridge.sip.message import Headers, Request, Response, make_response
from telebridge.sip.stack import ServerRequest, SipStack
from telebridge.sip.transaction import ClientTransaction
from telebridge.sip.transaction_layer import new_branch
from telebridge.sip.transport import Flow
from telebridge.sip.uri import format_host

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"
SDP = "application/sdp"


def new_tag() -> str:
    """A From/To tag with 64 random bits (§19.3)."""
    return secrets.token_hex(8)


def via_for(flow: Flow) -> str:
    """Our Via for a request sent over ``flow``, with a fresh branch and rport (RFC 3581)."""
    host, port = flow.local
    return f"SIP/2.0/{flow.transport_name} {format_host(host)}:{port};branch={new_branch()};rport"


def contact_for(flow: Flow, user: str = "telebridge") -> str:
    """Our Contact for dialogs on ``flow``."""
    host, port = flow.local
    transport = {"UDP": "", "TCP": ";transport=tcp", "TLS": ";transport=tls", "WSS": ";transport=ws", "WS": ";transport=ws"}
    return f"<sip:{user}@{format_host(host)}:{port}{transport.get(flow.transport_name, '')}>"


def with_body(message: Request | Response, body: bytes | None) -> None:
    """Attach an SDP body (or none)."""
    if body:
        message.headers.set("Content-Type", SDP)
        message.body = body


class AnsweringLeg:
    """The caller's side: we are the UAS of its INVITE."""

    def __init__(self, stack: SipStack, incoming: ServerRequest, clock: IReactorTime, on_no_ack: Callable[[], None]) -> None:
        self.stack = stack
        self.incoming = incoming
        self.invite = incoming.request
        self.flow = incoming.flow
        self.clock = clock
        self.on_no_ack = on_no_ack
        self.tag = new_tag()
        self.contact = contact_for(self.flow)
        self.dialog: Dialog | None = None
        self._ok: Response | None = None
        self._retransmit: DelayedCall | None = None
        self._interval = stack.layer.t1
        self._give_up_at = 0.0

    @property
    def key(self) -> tuple[str, str]:
        """(Call-ID, our tag): how requests and responses in this dialog find it."""
        return (self.invite.call_id, self.tag)

    def _response(self, status: int, reason: str | None = None, body: bytes | None = None) -> Response:
        response = make_response(self.invite, status, reason, to_tag=self.tag)
        if 100 < status < 300:
            response.headers.add("Contact", self.contact)
            response.headers.add("Allow", ALLOW)
        with_body(response, body)
        return response

    def progress(self, status: int, body: bytes | None = None) -> None:
        """180 Ringing or 183 Session Progress (with early media SDP)."""
        self.incoming.respond(self._response(status, body=body))

    def reject(self, status: int, reason: str | None = None) -> None:
        """A final failure response (ignored once answered)."""
        self.incoming.respond(self._response(status, reason))

    def answer(self, body: bytes, extra_headers: list[tuple[str, str]] | None = None) -> None:
        """200 OK: the dialog is confirmed; unreliable flows retransmit it until ACK."""
        self._ok = self._response(200, body=body)
        for name, value in extra_headers or []:
            self._ok.headers.add(name, value)
        self.dialog = Dialog.from_uas(self.invite, self.tag, self.contact)
        self.dialog.confirm()
        self.incoming.respond(self._ok)
        if not self.flow.reliable:
            self._give_up_at = self.clock.seconds() + 64 * self.stack.layer.t1
            self._retransmit = self.clock.callLater(self._interval, self._resend_ok)

    def _resend_ok(self) -> None:
        self._retransmit = None
        if self._ok is None:
            return
        if self.clock.seconds() >= self._give_up_at:
            self._ok = None
            self.on_no_ack()
            return
        self.flow.send_response(self._ok)
        self._interval = min(2 * self._interval, self.stack.layer.t2)
        self._retransmit = self.clock.callLater(self._interval, self._resend_ok)

    def acked(self) -> None:
        """The ACK for our 2xx came: stop retransmitting."""
        self._ok = None
        self.stop_timers()

    def stop_timers(self) -> None:
        """Cancel the 2xx retransmission."""
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None

    def bye(self) -> None:
        """End the confirmed dialog from our side."""
        send_bye(self.stack, self.dialog, self.flow)

    def reinvite(self, body: bytes, on_response: Callable[[Response], None]) -> None:
        """A re-INVITE to the caller (we are the UAS of its dialog, but may offer too)."""
        if self.dialog is not None:
            send_reinvite(self.stack, self.dialog, self.flow, body, [], on_response, lambda ack: None)


class PlacedLeg:
    """A callee's side: we are the UAC of an INVITE we send."""

    def __init__(
        self,
        stack: SipStack,
        flow: Flow,
        request_uri: str,
        from_: str,
        to: str,
        body: bytes | None,
        on_response: Callable[[PlacedLeg, Response], None],
        max_forwards: int = 70,
        extra_headers: tuple[tuple[str, str], ...] = (),
        answerer: ChallengeAnswerer | None = None,
        session_expires: int | None = None,
    ) -> None:
        self.stack = stack
        self.flow = flow
        self.on_response = on_response
        self.answerer = answerer
        self.heard_from = False
        self.tag = new_tag()
        self.call_id = secrets.token_hex(12)
        headers = Headers()
        headers.add("Via", via_for(flow))
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", f"{from_};tag={self.tag}")
        headers.add("To", to)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", contact_for(flow))
        headers.add("Allow", ALLOW)
        for name, value in extra_headers:
            headers.add(name, value)
        if session_expires is not None:
            headers.add("Supported", "timer")
            headers.add("Session-Expires", str(session_expires))
            headers.add("Min-SE", str(MIN_SE))
        self.asked_session = session_expires
        #: The session timer the 2xx settled (RFC 4028), if we asked for one.
        self.session: SessionTimer | None = None
        self.remote_allows_update = False
        self._interval_retried = False
        self.invite = Request(headers=headers, method="INVITE", uri=request_uri)
        with_body(self.invite, body)
        self.dialog: Dialog | None = None
        self.final: int | None = None
        self._ack: Request | None = None
        self.transaction: ClientTransaction | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(Call-ID, our tag)."""
        return (self.call_id, self.tag)

    def send(self) -> None:
        """Send the INVITE."""
        self.transaction = self.stack.send_request(self.invite, self.flow, self._response)

    def _response(self, response: Response) -> None:
        self.heard_from = True
        retry = self._retry_for(response)
        if retry is not None and self.final is None:
            self.invite = retry
            self.send()
            return
        if response.status >= 200:
            self.final = self.final or response.status
        if 200 <= response.status < 300:
            if self.dialog is None:
                self.dialog = Dialog.from_uac(self.invite, response)
                self._settle_session(response)
            else:
                self.dialog.update_from_response(response)
            self.ack()
        self.on_response(self, response)

    def _retry_for(self, response: Response) -> Request | None:
        """The INVITE again for a challenge (401/407) or a too-brief session interval (422)."""
        if self.answerer is not None and response.status in (401, 407):
            return self.answerer.retry(self.invite, response)
        minimum = min_se_of(response) if response.status == 422 else None
        if minimum is not None and self.asked_session is not None and not self._interval_retried:
            self._interval_retried = True
            self.asked_session = max(minimum, self.asked_session)
            retry = next_in_sequence(self.invite)
            retry.headers.set("Session-Expires", str(self.asked_session))
            retry.headers.set("Min-SE", str(minimum))
            return retry
        return None

    def _settle_session(self, response: Response) -> None:
        allowed = {m.strip().upper() for m in response.headers.get_all("Allow")}
        self.remote_allows_update = "UPDATE" in allowed
        if self.asked_session is None:
            return
        # A 2xx without Session-Expires leaves the refreshing to us (RFC 4028 §7.2).
        self.session = session_timer_of(response) or SessionTimer(self.asked_session, "uac")

    def refresh(self, body: bytes | None, on_failure: Callable[[], None]) -> None:
        """Refresh the session (RFC 4028 §7.4): UPDATE if allowed, else a re-INVITE with ``body`` unchanged."""
        if self.dialog is None or self.session is None or self.dialog.state is DialogState.TERMINATED:
            return
        timer = [("Supported", "timer"), ("Session-Expires", SessionTimer(self.session.interval, "uac").header())]

        def answered(response: Response) -> None:
            if response.status in (408, 481):
                on_failure()  # the far side lost the dialog (RFC 4028 §10)

        if self.remote_allows_update:
            update = self.dialog.new_request("UPDATE", via_for(self.flow))
            for name, value in timer:
                update.headers.add(name, value)
            self.stack.send_request(update, self.flow, answered)
        else:
            self.reinvite(body or self.invite.body, answered, timer)

    def reinvite(
        self, body: bytes, on_response: Callable[[Response], None], headers: list[tuple[str, str]] | None = None
    ) -> None:
        """A re-INVITE in this dialog; its 2xx is ACKed here (and again for a retransmission)."""
        if self.dialog is None:
            return

        def remember_ack(ack: Request) -> None:
            self._ack = ack

        send_reinvite(self.stack, self.dialog, self.flow, body, headers or [], on_response, remember_ack)

    def ack(self) -> None:
        """ACK the 2xx (again, for a retransmission)."""
        if self.dialog is None:
            return
        if self._ack is None:
            self._ack = self.dialog.new_request("ACK", via_for(self.flow))
        self.stack.send_ack(self._ack, self.flow)

    def cancel(self) -> None:
        """CANCEL the pending INVITE; its 487 comes back through the response callback."""
        if self.transaction is not None and self.final is None:
            self.stack.cancel(self.transaction)

    def bye(self) -> None:
        """End the confirmed dialog from our side."""
        send_bye(self.stack, self.dialog, self.flow)


def send_bye(stack: SipStack, dialog: Dialog | None, flow: Flow) -> None:
    """BYE in ``dialog``; its answer does not matter to a call that is over."""
    if dialog is None or dialog.state is DialogState.TERMINATED:
        return
    bye = dialog.new_request("BYE", via_for(flow))
    stack.send_request(bye, flow, lambda response: None)


def send_reinvite(
    stack: SipStack,
    dialog: Dialog,
    flow: Flow,
    body: bytes,
    headers: list[tuple[str, str]],
    on_response: Callable[[Response], None],
    on_ack: Callable[[Request], None],
) -> None:
    """Send a re-INVITE with ``body`` and ACK its 2xx (§14.1, §13.2.2.4)."""
    if dialog.state is DialogState.TERMINATED:
        return
    invite = dialog.new_request("INVITE", via_for(flow), body=body, content_type=SDP)
    for name, value in headers:
        invite.headers.add(name, value)

    def answered(response: Response) -> None:
        if 200 <= response.status < 300:
            ack = dialog.new_request("ACK", via_for(flow))
            stack.send_ack(ack, flow)
            on_ack(ack)
        on_response(response)

    stack.send_request(invite, flow, answered)
