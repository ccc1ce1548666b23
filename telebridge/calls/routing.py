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
* Any other method addressed to a user that is neither configured nor
  registered gets 404; the rest get 405 with Allow until calls land.
* Requests for a domain we do not serve get 404.
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from telebridge.calls.registrar import Registrar
from telebridge.metrics import Counters
from telebridge.sip.auth import AuthOutcome, DigestServer
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Request, Response, make_response
from telebridge.sip.transport import Flow
from telebridge.sip.uri import parse_uri

log = Logger()

ALLOW = "REGISTER, OPTIONS, ACK, CANCEL"
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
    ) -> None:
        self.registrar = registrar
        self.digest = digest
        self.passwords = passwords
        self.domains = domains
        self.counters = counters
        self.new_tag = new_tag
        self.user_agent = user_agent

    def handle_request(self, request: Request, flow: Flow, now: float) -> Response | None:
        """Answer ``request`` (``None`` for ACK, which gets no response)."""
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
            return self._register(request, flow, now)
        if uri.user and not self._known_user(uri.user, now):
            return self._reply(request, 404)
        response = self._reply(request, 405)
        response.headers.add("Allow", ALLOW)
        return response

    def flow_closed(self, flow: Flow) -> None:
        """A connection ended: its registrations end with it (RFC 7118 / 5626)."""
        removed = self.registrar.drop_flow(flow)
        for binding in removed:
            log.info(
                "registration of {user} ended with its connection {peer}",
                user=binding.user,
                peer=flow.peer,
            )

    def get_timer(self) -> float | None:
        """When the next registration expires."""
        return self.registrar.next_expiry()

    def handle_timer(self, now: float) -> None:
        """Expire registrations whose time is up (RFC 3261 §10.3)."""
        for binding in self.registrar.expire(now):
            log.info("registration of {user} expired", user=binding.user)

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

    def _register(self, request: Request, flow: Flow, now: float) -> Response:
        try:
            to_user = request.to.uri.user
        except SipParseError as e:
            return self._reply(request, 400, f"Bad Request ({e.reason})")
        if not to_user:
            return self._reply(request, 400, "Bad Request (To has no user)")
        if flow.identity is not None:
            if to_user != flow.identity:
                return self._forbidden_identity(request, flow.identity)
        else:
            refusal = self._check_digest(request, to_user, now)
            if refusal is not None:
                return refusal
        response = self.registrar.register(request, to_user, flow, now)
        response.headers.add("Server", self.user_agent)
        if response.status == 200:
            log.info("REGISTER {user} from {peer} over {transport}", user=to_user, peer=flow.peer,
                     transport=flow.transport_name)
        return response

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
