"""What the embedded default does with each incoming request.

Rules of operation:

* OPTIONS is answered 200 with our capabilities, whatever its target
  (RFC 3261 §11.2): monitoring systems and SIPp use it as a ping.
* REGISTER is authenticated first, then handed to the :class:`Registrar`:
  - over a browser's WebSocket the token already says who it is; From (of
    any request) and To (of a REGISTER) must name that user, else 403
    (issue 2 §6);
  - over UDP, TCP or TLS a SIP phone answers a digest challenge against
    ``[users.NAME]``. Every unauthenticated REGISTER is challenged, whether
    or not the user exists, and bad credentials get 403, so a scanner
    (svwar, svcrack) cannot tell unknown users from wrong passwords.
* INVITE (outside a dialog) starts a call in the :class:`CallManager`.
  The caller is a browser (its token), a SIP phone answering a digest
  challenge, or our own browser-to-browser loop (a signed header). The
  callee is ``echo``, or a registered user: a browser callee of a browser
  is reached through the loop, so both legs are full WebRTC legs on the
  relay; a browser's call to a SIP phone goes to the phone's registered
  flow. Calls between two SIP phones are not bridged (403): telebridge is
  a gateway, not a PBX. A known user with no registration gets 480, an
  unknown one 404.
* In PBX mode (:mod:`telebridge.calls.pbx_routing`) a browser's REGISTER
  waits for the PBX, its calls go to the PBX, and the PBX's INVITEs (trusted
  by address) ring the user's tabs; a user's last tab going away
  un-registers it upstream.
* Requests inside a dialog (To tag) go to the call they belong to.
* Any other method gets 405 with Allow.
* Requests for a domain we do not serve get 404.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from typing import Callable

from twisted.logger import Logger

from telebridge.calls.b2bua import ECHO, LOOP_HEADER, CallManager, Destination, Target, loop_token
from telebridge.calls.pbx_routing import PbxRouting
from telebridge.calls.registrar import Binding, Registrar
from telebridge.metrics import Counters
from telebridge.sip.auth import AuthOutcome, DigestServer
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Request, Response, make_response
from telebridge.sip.stack import ServerRequest
from telebridge.sip.transport import Flow, UdpFlow
from telebridge.sip.uri import format_host, parse_name_addr, parse_uri

log = Logger()

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"
IN_DIALOG = ("INVITE", "BYE", "UPDATE", "INFO", "OPTIONS")
ECHO_USER = "echo"
SUPPORTED = "path, outbound"


class EmbeddedRouter:
    """The transaction user of the embedded default (registrar mode)."""

    def __init__(
        self,
        registrar: Registrar,
        digest: DigestServer,
        passwords: Callable[[str], str | None],
        domains: frozenset[str],
        counters: Counters,
        new_tag: Callable[[], str],
        user_agent: str = "telebridge",
        calls: CallManager | None = None,
        loop_flow: Callable[[], Flow | None] = lambda: None,
        pbx: PbxRouting | None = None,
        bearer_subject: Callable[[str, float], str | None] | None = None,
        dtmf_mode: Callable[[str], str] = lambda user: "rfc4733",
    ) -> None:
        self.registrar = registrar
        self.digest = digest
        self.passwords = passwords
        self.domains = domains
        self.counters = counters
        self.new_tag = new_tag
        self.user_agent = user_agent
        self.calls = calls
        self.loop_flow = loop_flow
        self.pbx = pbx
        self.bearer_subject = bearer_subject
        self.dtmf_mode = dtmf_mode

    def request_received(self, incoming: ServerRequest, now: float) -> Response | None:
        """The stack's entry point: calls are answered later, the rest now."""
        request = incoming.request
        if self.calls is not None and request.method in IN_DIALOG and request.to_tag:
            self.counters.inc("sip_requests_total", method=request.method)
            return self._in_dialog(incoming)
        if self.calls is not None and request.method == "INVITE":
            self.counters.inc("sip_requests_total", method=request.method)
            return self._invite(incoming, now)
        return self.handle_request(request, incoming.flow, now, incoming)

    def ack_received(self, ack: Request, flow: Flow) -> None:
        """An ACK for a 2xx we sent."""
        if self.calls is not None:
            self.calls.ack_received(ack)

    def cancel_received(self, incoming: ServerRequest) -> None:
        """CANCEL of a pending INVITE: the call ends it with 487."""
        if self.calls is None or not self.calls.cancel_received(incoming):
            incoming.respond(make_response(incoming.request, 487))

    def stray_response(self, response: Response, flow: Flow) -> None:
        """A callee's 2xx retransmission: ACK it again."""
        if self.calls is not None:
            self.calls.stray_response(response)

    def handle_request(self, request: Request, flow: Flow, now: float, incoming: ServerRequest | None = None) -> Response | None:
        """Answer ``request``: ``None`` for ACK, and for a REGISTER answered later (PBX mode)."""
        self.counters.inc("sip_requests_total", method=request.method)
        if request.method == "ACK":
            return None
        if flow.identity is not None:
            refusal = self._check_identity(request, flow.identity)
            if refusal is not None:
                return refusal
        if request.method == "OPTIONS":
            return self._options(request)
        uri = parse_uri(request.uri)
        if self.domains and uri.host.lower() not in self.domains and request.method == "REGISTER":
            return self._reply(request, 404, "Not Found (domain not served here)")
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and int(max_forwards) == 0:
            return self._reply(request, 483)
        if request.method == "REGISTER":
            return self._register(request, flow, now, incoming)
        if uri.user and not self._known_user(uri.user, now):
            return self._reply(request, 404)
        response = self._reply(request, 405)
        response.headers.add("Allow", ALLOW)
        return response

    def flow_closed(self, flow: Flow) -> None:
        """A connection ended: its registrations end with it (RFC 7118 / 5626), its calls end or park."""
        if self.calls is not None:
            self.calls.flow_closed(flow, clean=getattr(flow, "closed_cleanly", True))
        removed = self.registrar.drop_flow(flow)
        for binding in removed:
            log.info(
                "registration of {user} ended with its connection {peer}",
                user=binding.user,
                peer=flow.peer,
            )
        self._bindings_gone(removed)

    def get_timer(self) -> float | None:
        """When the next registration expires."""
        return self.registrar.next_expiry()

    def handle_timer(self, now: float) -> None:
        """Expire registrations whose time is up (RFC 3261 §10.3)."""
        expired = self.registrar.expire(now)
        for binding in expired:
            log.info("registration of {user} expired", user=binding.user)
        self._bindings_gone(expired)

    def _bindings_gone(self, removed: list[Binding]) -> None:
        """PBX mode: a user whose last tab is gone is un-registered upstream."""
        if self.pbx is None:
            return
        for user in {b.user for b in removed}:
            if not self.registrar.has_bindings(user):
                self.pbx.tabs_gone(user)

    def _known_user(self, user: str, now: float) -> bool:
        return self.passwords(user) is not None or bool(self.registrar.lookup(user, now))

    def _reply(self, request: Request, status: int, reason: str | None = None) -> Response:
        response = make_response(request, status, reason, to_tag=self.new_tag())
        response.headers.add("Server", self.user_agent)
        return response

    def _options(self, request: Request) -> Response:
        response = self._reply(request, 200)
        response.headers.add("Allow", ALLOW)
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", SUPPORTED)
        return response

    def _register(self, request: Request, flow: Flow, now: float, incoming: ServerRequest | None) -> Response | None:
        try:
            to_user = request.to.uri.user
        except SipParseError as e:
            return self._reply(request, 400, f"Bad Request ({e.reason})")
        if not to_user:
            return self._reply(request, 400, "Bad Request (To has no user)")
        if flow.identity is not None:
            if to_user != flow.identity:
                return self._forbidden_identity(request, flow.identity)
            refusal = self._check_bearer(request, flow.identity, now)
        else:
            refusal = self._check_digest(request, to_user, now)
        if refusal is not None:
            return refusal

        def apply() -> Response:
            return self._apply_registration(request, to_user, flow, now)

        if self.pbx is not None and flow.identity is not None and incoming is not None:
            return self.pbx.register(incoming, to_user, _is_removal(request), apply)
        return apply()

    def _apply_registration(self, request: Request, user: str, flow: Flow, now: float) -> Response:
        response = self.registrar.register(request, user, flow, now)
        response.headers.add("Server", self.user_agent)
        if response.status == 200:
            log.info("REGISTER {user} from {peer} over {transport}", user=user, peer=flow.peer,
                     transport=flow.transport_name)
            if self.calls is not None and flow.identity is not None:
                self.calls.browser_returned(self.registrar.instance_of(flow), flow)
        if self.pbx is not None and not self.registrar.has_bindings(user):
            self.pbx.tabs_gone(user)
        return response

    def _check_bearer(self, request: Request, identity: str, now: float) -> Response | None:
        """``Authorization: Bearer <JWT>`` (JsSIP's authorization_jwt) must name the WebSocket's user."""
        credentials = request.headers.get("Authorization")
        if credentials is None or not credentials[:7].lower() == "bearer ":
            return None
        if self.bearer_subject is None:
            return self._reply(request, 403, "Forbidden (bearer tokens are not accepted here)")
        subject = self.bearer_subject(credentials[7:].strip(), now)
        if subject is None:
            self.counters.inc("sip_auth_failures_total", kind="bearer")
            return self._reply(request, 403, "Forbidden (invalid or expired bearer token)")
        if subject != identity:
            return self._forbidden_identity(request, identity)
        return None

    # -- calls ---------------------------------------------------------------------

    def _in_dialog(self, incoming: ServerRequest) -> Response | None:
        request, flow = incoming.request, incoming.flow
        if flow.identity is not None:
            refusal = self._check_identity(request, flow.identity)
            if refusal is not None:
                return refusal
        assert self.calls is not None
        return self.calls.in_dialog(incoming)

    def _invite(self, incoming: ServerRequest, now: float) -> Response | None:
        request, flow = incoming.request, incoming.flow
        try:
            uri = parse_uri(request.uri)
            from_user = request.from_.uri.user
        except SipParseError as e:
            return self._reply(request, 400, f"Bad Request ({e.reason})")
        if flow.identity is not None:
            refusal = self._check_identity(request, flow.identity)
            if refusal is not None:
                return refusal
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and int(max_forwards) == 0:
            return self._reply(request, 483)
        browser_caller = flow.identity is not None
        from_pbx = self.pbx is not None and self.pbx.sent_by_pbx(flow)
        if not browser_caller and not from_pbx and not self._looped(request):
            refusal = self._check_digest(request, from_user or "", now)
            if refusal is not None:
                return refusal
        assert self.calls is not None
        instance = self.registrar.instance_of(flow) if browser_caller else None
        if self.pbx is not None and browser_caller and uri.user != ECHO_USER:
            log.info("INVITE {callee} from {caller} to the PBX", callee=uri.user, caller=from_user)
            return self.pbx.place_outgoing(incoming, from_user or "", uri.user or "", instance)
        target = self._target(uri.user or "", browser_caller, now)
        if from_pbx and isinstance(target, Response) and target.status == 403:
            target = Response(status=480, reason="Temporarily Unavailable (no browser of this user is registered)")
        if isinstance(target, Response):
            return self._reply(request, target.status, target.reason)
        log.info("INVITE {callee} from {caller} over {transport}", callee=uri.user, caller=from_user, transport=flow.transport_name)
        self.calls.place(incoming, browser_caller, instance, target)
        return None

    def _looped(self, request: Request) -> bool:
        """Our own browser-to-browser INVITE, signed with the loop secret."""
        secret = self.calls.loop_secret if self.calls is not None else None
        token = request.headers.get(LOOP_HEADER)
        return secret is not None and token is not None and hmac.compare_digest(token, loop_token(secret, request.call_id))

    def _target(self, user: str, browser_caller: bool, now: float) -> Target | Response:
        """Where a call to ``user`` goes, or the refusal (a bare status) to send back."""
        if user == ECHO_USER:
            if not browser_caller:
                return Response(status=488, reason="Not Acceptable Here (echo is for browsers)")
            return ECHO
        bindings = self.registrar.lookup(user, now) if user else []
        if not bindings:
            if user and self.passwords(user) is not None:
                return Response(status=480, reason="Temporarily Unavailable (not registered)")
            return Response(status=404, reason="Not Found")
        browsers = [b for b in bindings if _is_browser(b)]
        phones = [b for b in bindings if not _is_browser(b)]
        if browser_caller and browsers:
            loop = self.loop_flow()
            if loop is None:
                return Response(status=503, reason="Service Unavailable (no UDP listener for browser-to-browser calls)")
            host, port = loop.local
            return [Destination(f"sip:{user}@{format_host(host)}:{port}", f"<sip:{user}@{format_host(host)}>", loop, browser=True)]
        chosen = phones if browser_caller else browsers
        if not chosen:
            return Response(status=403, reason="Forbidden (calls between SIP phones are not bridged)")
        return [
            Destination(
                str(b.contact.uri), f"<sip:{user}@{format_host(flow.local[0])}>", flow, browser=_is_browser(b),
                instance=b.instance_id, dtmf=self.dtmf_mode(user),
            )
            for b in chosen
            if (flow := _flow_to(b)) is not None
        ]

    def _check_identity(self, request: Request, identity: str) -> Response | None:
        """A browser speaks only as the user its token names (issue 2 §6)."""
        try:
            from_user = request.from_.uri.user
        except SipParseError as e:
            return self._reply(request, 400, f"Bad Request ({e.reason})")
        if from_user != identity:
            return self._forbidden_identity(request, identity)
        return None

    def _forbidden_identity(self, request: Request, identity: str) -> Response:
        self.counters.inc("sip_auth_failures_total", kind="token_user")
        return self._reply(request, 403, f"Forbidden (token is for {identity})")

    def _check_digest(self, request: Request, user: str, now: float) -> Response | None:
        """``None`` when the request carries good credentials for ``user``."""
        credentials = request.headers.get("Authorization")
        if credentials is None:
            return self._challenge(request, now, stale=False)
        result = self.digest.verify(credentials, request.method, self.passwords, now)
        if result.outcome is AuthOutcome.STALE:
            return self._challenge(request, now, stale=True)
        if result.outcome is not AuthOutcome.OK or result.username != user:
            self.counters.inc("sip_auth_failures_total", kind="digest")
            log.info("digest authentication failed for {user} from {peer}", user=user, peer=request.top_via.host)
            return self._reply(request, 403, "Forbidden (bad credentials)")
        return None

    def _challenge(self, request: Request, now: float, stale: bool) -> Response:
        response = self._reply(request, 401)
        for value in self.digest.challenge(now, stale=stale):
            response.headers.add("WWW-Authenticate", value)
        return response


def _is_removal(request: Request) -> bool:
    """A REGISTER that only removes bindings (every expiry 0, or ``Contact: *``)."""
    header = (request.headers.get("Expires") or "").strip()
    contacts = request.headers.get_all("Contact")
    if not contacts:
        return False
    try:
        expiries = [parse_name_addr(c).params.get("expires") if c != "*" else None for c in contacts]
    except SipParseError:
        return False
    return all((e if e is not None else header).strip() == "0" for e in expiries)


def _is_browser(binding: Binding) -> bool:
    return getattr(binding.flow, "transport_name", "") in ("WS", "WSS")


def _flow_to(binding: Binding) -> Flow | None:
    """Where requests for a binding go (RFC 5626 §5.3, RFC 3261 §10.3).

    A connection (TCP, TLS, WebSocket) or an outbound registration (reg-id)
    is reached over the flow it registered on; a plain UDP registration at
    its Contact address, sent from the socket it registered through.
    """
    flow = binding.flow
    if isinstance(flow, UdpFlow) and binding.reg_id is None:
        uri = binding.contact.uri
        return replace(flow, peer=(uri.host, uri.port or 5060))
    return flow  # type: ignore[return-value]
