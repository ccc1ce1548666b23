"""What PBX mode (``[upstream]``) changes in routing.

Rules of operation:

* A browser's REGISTER is answered only after telebridge registered that
  user to the PBX (:mod:`telebridge.calls.upstream_registrations`); the
  PBX's refusal is passed on (403 for refused credentials, 503 when it is
  down) and nothing is registered locally; a user without a PBX account
  (:mod:`telebridge.calls.accounts`) gets 403. Un-registrations are applied
  locally at once; the upstream one follows when the user's last tab is
  gone (see :meth:`PbxRouting.tabs_gone`).
* A browser's INVITE to anything but ``echo`` goes to the PBX as
  ``sip:TARGET@domain`` from ``sip:USER@domain``; the PBX's challenges are
  answered with the user's credentials; a PBX that stays silent for
  ``[upstream] timeout`` seconds (or cannot be connected to) gives the
  browser 503, and so does an account service that does not answer.
* The PBX's INVITEs for a user ring all of that user's tabs (the fork in
  :mod:`telebridge.calls.b2bua`); it is trusted by its address, no digest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from twisted.logger import Logger
from twisted.python.failure import Failure

from telebridge.calls.b2bua import CallManager, Destination
from telebridge.calls.upstream import Upstream, answerer_of
from telebridge.calls.upstream_registrations import Outcome, UpstreamRegistrations
from telebridge.config import AccountConfig
from telebridge.sip.challenge import ChallengeAnswerer
from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Request, Response
from telebridge.sip.stack import ServerRequest
from telebridge.sip.transport import Flow
from telebridge.sip.uri import format_host, parse_name_addr, parse_uri

log = Logger()

Reply = Callable[[Request, int, str | None], Response]


class PbxRouting:
    """Registrations mirrored to the PBX, and browser calls placed through it."""

    def __init__(
        self,
        upstream: Upstream,
        registrations: UpstreamRegistrations,
        calls: CallManager,
        reply: Reply,
        has_tabs: Callable[[str], bool],
    ) -> None:
        self.upstream = upstream
        self.registrations = registrations
        self.calls = calls
        self.reply = reply
        self.has_tabs = has_tabs

    def register(self, incoming: ServerRequest, user: str, removal: bool, apply: Callable[[], Response]) -> Response | None:
        """A browser's REGISTER: ``apply`` (the local registration) runs once the PBX agreed."""
        request = incoming.request
        if removal:
            return apply()

        def registered(outcome: Outcome) -> None:
            if not outcome.ok:
                incoming.respond(self.reply(request, outcome.status, outcome.reason))
                if not self.has_tabs(user):
                    self.registrations.release(user)  # nothing to retry for
                return
            if not getattr(incoming.flow, "opened", True):
                return  # the tab went away while the PBX was asked
            incoming.respond(apply())

        self.registrations.ensure(user).addCallback(registered)
        return None

    def tabs_gone(self, user: str) -> None:
        """``user`` has no registered tab left: un-register it upstream."""
        self.registrations.release(user)

    def sent_by_pbx(self, flow: Flow) -> bool:
        return self.upstream.sent_by_pbx(flow)

    def place_outgoing(self, incoming: ServerRequest, caller: str, target: str, instance: str | None) -> Response | None:
        """A browser's call: to the PBX, with the caller's credentials ready for its challenge."""
        request = incoming.request
        try:
            from_ = _as_pbx_user(request.headers.get("From") or "", self.upstream.aor(caller))
        except SipParseError as e:
            return self.reply(request, 400, f"Bad Request ({e.reason})")
        domain = format_host(self.upstream.config.domain)

        def place(flow: Flow, answerer: ChallengeAnswerer, dtmf: str) -> None:
            if incoming.answered:
                return  # CANCELled while the account or the connection was looked up
            destination = Destination(
                uri=f"sip:{target}@{domain}",
                to=f"<sip:{target}@{domain}>",
                flow=flow,
                browser=False,
                from_=from_,
                answerer=answerer,
                reach_timeout=self.upstream.timeout,
                session_expires=self.upstream.config.session_expires,
                dtmf=dtmf,
            )
            self.calls.place(incoming, True, instance, [destination])

        def refuse(status: int, reason: str) -> None:
            incoming.respond(self.reply(request, status, reason))

        def with_account(account: AccountConfig | None) -> None:
            answerer = answerer_of(account)
            if account is None or answerer is None:
                refuse(403, f"Forbidden (no PBX account for {caller})")
                return

            def unreachable(failure: Failure) -> None:
                log.warn("call from {caller} to {target}: {why}", caller=caller, target=target, why=failure.getErrorMessage())
                refuse(503, "Service Unavailable (the PBX cannot be reached)")

            self.upstream.flow().addCallbacks(place, unreachable, callbackArgs=(answerer, self.upstream.dtmf_for(account)))

        def no_credentials(failure: Failure) -> None:
            log.warn("no PBX credentials for {caller}: {why}", caller=caller, why=failure.getErrorMessage())
            refuse(503, "Service Unavailable (the account service did not answer)")

        self.upstream.accounts.lookup(caller).addCallbacks(with_account, no_credentials)
        return None


def _as_pbx_user(from_header: str, aor: str) -> str:
    """The browser's From (display name kept) naming the user as the PBX knows it, without tag."""
    name_addr = parse_name_addr(from_header)
    return str(replace(name_addr, uri=parse_uri(aor), params=name_addr.params.without("tag")))
