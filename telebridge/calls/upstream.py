"""The PBX telebridge stands in front of (PBX mode): where it is, who speaks for whom.

Rules of operation:

* Requests for the PBX go to ``[upstream] proxy``: over UDP from our first
  UDP listener, over TCP or TLS on a connection the connector opens and
  reuses.
* Users are named ``sip:USER@domain`` toward the PBX, whatever host the
  browser wrote in its own From.
* Each browser user's PBX credentials come from an
  :class:`~telebridge.calls.accounts.AccountSource` (``[accounts.USER]`` or
  the app server's callback); a user without an account cannot register
  or call in PBX mode. Credentials only ever answer the PBX's challenges.
* A request arriving from the proxy's address (and port, over UDP) on the
  proxy's transport is the PBX's: it needs no digest from us.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from telebridge.calls.accounts import AccountSource
from telebridge.config import AccountConfig, UpstreamConfig
from telebridge.sip.auth import DigestClient
from telebridge.sip.challenge import ChallengeAnswerer
from telebridge.sip.connector import SipConnector
from telebridge.sip.transport import Flow, SipUdpProtocol, UdpFlow
from telebridge.sip.uri import format_host


class PbxUnreachable(Exception):
    """No way to send to the PBX (no UDP listener, or the connection failed)."""


class Upstream:
    """The PBX's address, its domain, and the accounts used toward it."""

    def __init__(
        self,
        config: UpstreamConfig,
        accounts: AccountSource,
        udp_listener: Callable[[], SipUdpProtocol | None],
        connector: SipConnector | None,
    ) -> None:
        self.config = config
        self.accounts = accounts
        self.udp_listener = udp_listener
        self.connector = connector

    @property
    def timeout(self) -> float:
        """How long the PBX may stay silent before it counts as down."""
        return self.config.timeout

    def flow(self) -> defer.Deferred[Flow]:
        """A flow to the PBX; fails with :class:`PbxUnreachable`."""
        proxy = self.config.proxy
        if proxy.transport == "udp":
            listener = self.udp_listener()
            if listener is None:
                return defer.fail(PbxUnreachable("no UDP listener to send from"))
            return defer.succeed(UdpFlow(listener, (proxy.host, proxy.port)))
        if self.connector is None:
            return defer.fail(PbxUnreachable(f"no connector for {proxy.transport}"))
        connecting = self.connector.connect(proxy.transport, proxy.host, proxy.port, self.config.domain)

        def unreachable(failure: object) -> None:
            raise PbxUnreachable(f"cannot connect to {proxy.url}: {getattr(failure, 'value', failure)}")

        connecting.addErrback(unreachable)
        return connecting

    def sent_by_pbx(self, flow: Flow) -> bool:
        """Whether a request on ``flow`` comes from the PBX.

        Over UDP a PBX sends from the port it listens on, so address and
        port must match; over TCP or TLS its connections come from any port.
        """
        proxy = self.config.proxy
        if flow.transport_name != proxy.transport.upper():
            return False
        if proxy.transport == "udp":
            return tuple(flow.peer) == (proxy.host, proxy.port)
        return flow.peer[0] == proxy.host

    def aor(self, user: str) -> str:
        """``sip:USER@domain``: how the PBX knows a user."""
        return f"sip:{user}@{format_host(self.config.domain)}"

    def answerer_for(self, user: str) -> defer.Deferred[ChallengeAnswerer | None]:
        """Answers the PBX's challenges for ``user`` (a fresh one per request sequence);
        ``None`` without an account; fails with AccountsUnavailable."""
        return self.accounts.lookup(user).addCallback(answerer_of)

    def dtmf_for(self, account: AccountConfig) -> str:
        """How a browser's digits reach the PBX on this account's calls: its own
        setting, else ``[upstream] dtmf``."""
        return account.dtmf or self.config.dtmf


def answerer_of(account: AccountConfig | None) -> ChallengeAnswerer | None:
    """A challenge answerer with the account's credentials (None without an account)."""
    return ChallengeAnswerer(DigestClient(account.username, account.password)) if account else None
