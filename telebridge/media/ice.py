"""An ICE-lite agent (RFC 8445 §2.5) with consent freshness (RFC 7675), sans-I/O.

Rules of operation:

* The gateway is lite: it never sends checks, it answers them. The browser
  (a full agent) is controlling and nominates a pair with USE-CANDIDATE.
* A check is valid when its USERNAME is ``<our ufrag>:<their ufrag>`` (the
  remote part is checked once the remote ufrag is known), its
  MESSAGE-INTEGRITY verifies with our password, and its FINGERPRINT (when
  present) is right (RFC 8445 §7.3). Invalid checks get 400/401 and change
  nothing.
* The source address of a valid check is learnt as-is (peer-reflexive):
  mDNS ``.local`` host candidates never need resolving.
* The latest nominated address is the selected one; a new nomination
  (the browser moving onto a TURN relay, an ICE restart) moves it.
* Consent (RFC 7675 §5.1): if no valid check arrives from the selected
  address for ``consent_timeout`` seconds, consent is lost and the leg ends.
* ICE restart (RFC 8445 §9): a re-offer with new remote credentials gets
  new local ones in our answer (:meth:`IceLiteAgent.restart`). Until a
  check under the new credentials nominates a pair, checks under the old
  ones are still answered, so the media on the selected pair keeps its
  consent while the browser moves.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Callable, Union

from telebridge.media.stun import (
    BINDING,
    ERROR,
    ERROR_CODE,
    FINGERPRINT,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    REQUEST,
    SUCCESS,
    XOR_MAPPED_ADDRESS,
    StunError,
    StunMessage,
    encode_xor_address,
    error_value,
    parse_stun,
)

Address = tuple[str, int]
CONSENT_TIMEOUT = 30.0  # RFC 7675 §5.1


class IceState(enum.Enum):
    """NEW until a nomination, CONNECTED while consent holds, FAILED after."""

    NEW = "new"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SendTo:
    """Send ``data`` (a STUN response) to ``address``."""

    data: bytes
    address: Address


@dataclass(frozen=True, slots=True)
class PairSelected:
    """Media now goes to ``address`` (first nomination or a move)."""

    address: Address


@dataclass(frozen=True, slots=True)
class ConsentLost:
    """No valid check from the selected address in time (RFC 7675)."""

    address: Address


IceEvent = Union[SendTo, PairSelected, ConsentLost]


def new_credentials(random: Callable[[int], str] = secrets.token_urlsafe) -> tuple[str, str]:
    """A ufrag (>= 4 chars) and password (>= 22 chars) per RFC 8839 §5.4."""
    return random(6)[:8], random(18)[:24]


@dataclass
class IceLiteAgent:
    """One media stream's ICE-lite agent."""

    local_ufrag: str
    local_password: str
    remote_ufrag: str | None = None
    remote_password: str | None = None
    consent_timeout: float = CONSENT_TIMEOUT
    state: IceState = IceState.NEW
    selected: Address | None = None
    valid: dict[Address, float] = field(default_factory=dict)
    remote_candidates: list[str] = field(default_factory=list)
    checks_refused: int = 0
    #: (local ufrag, local password, remote ufrag) from before an ICE restart, until it completes.
    previous: tuple[str, str, str | None] | None = None

    def set_remote_credentials(self, ufrag: str, password: str) -> None:
        """From the peer's SDP; new values mean an ICE restart (RFC 8445 §9)."""
        if (ufrag, password) == (self.remote_ufrag, self.remote_password):
            return
        restart = self.remote_ufrag is not None
        self.remote_ufrag, self.remote_password = ufrag, password
        if restart:
            # Checks under the old credentials no longer count, but media
            # stays on the selected pair until the peer nominates a new one
            # (RFC 8445 §9), so its consent keeps running.
            self.valid = {a: t for a, t in self.valid.items() if a == self.selected}
        # When we offered, the peer's checks may arrive before its answer
        # does (an answerer starts checking at once): those stay valid.

    def restart(self, local: tuple[str, str], remote: tuple[str, str]) -> None:
        """Both sides' new credentials (RFC 8445 §9.1.1.1): ours for the answer, the peer's from its offer."""
        self.previous = (self.local_ufrag, self.local_password, self.remote_ufrag)
        self.local_ufrag, self.local_password = local
        self.remote_ufrag, self.remote_password = remote
        self.valid = {a: t for a, t in self.valid.items() if a == self.selected}

    def add_remote_candidate(self, candidate: str) -> None:
        """A trickled or SDP candidate; kept for stats, never needed to connect."""
        if len(self.remote_candidates) < 64:
            self.remote_candidates.append(candidate)

    def receive(self, data: bytes, source: Address, now: float) -> list[IceEvent]:
        """Handle one STUN datagram from ``source``."""
        try:
            message = parse_stun(data)
        except StunError:
            self.checks_refused += 1
            return []
        if message.method != BINDING or message.cls != REQUEST:
            return []  # a lite agent sends no checks, so expects no responses
        password, current = self.local_password, True
        refusal = self._refusal(message, self.local_ufrag, password, self.remote_ufrag)
        if refusal is not None and self.previous is not None:
            old_local, old_password, old_remote = self.previous
            if self._refusal(message, old_local, old_password, old_remote) is None:
                # A consent check on the pair in use while the browser restarts.
                refusal, password, current = None, old_password, False
        if refusal is None and current and message.use_candidate:
            self.previous = None  # a nomination under the new credentials completes a restart
        if refusal is not None:
            self.checks_refused += 1
            code, reason = refusal
            # No MESSAGE-INTEGRITY on a refusal: the check did not prove the key (RFC 8489 §9.1.3).
            reply = StunMessage(BINDING, ERROR, message.transaction_id).add(ERROR_CODE, error_value(code, reason))
            return [SendTo(reply.encode(), source)]
        events: list[IceEvent] = []
        self.valid[source] = now
        reply = StunMessage(BINDING, SUCCESS, message.transaction_id)
        reply.add(XOR_MAPPED_ADDRESS, encode_xor_address(source[0], source[1], message.transaction_id))
        events.append(SendTo(reply.encode(integrity_key=password.encode()), source))
        if message.use_candidate and current and source != self.selected and self.state is not IceState.FAILED:
            self.selected = source
            self.state = IceState.CONNECTED
            events.append(PairSelected(source))
        return events

    def _refusal(self, message: StunMessage, local_ufrag: str, local_password: str, remote_ufrag: str | None) -> tuple[int, str] | None:
        try:
            username = message.username
        except StunError:
            return 400, "Bad Request"
        if username is None or (message.get(MESSAGE_INTEGRITY) is None and message.get(MESSAGE_INTEGRITY_SHA256) is None):
            return 400, "Bad Request"
        local, _, remote = username.partition(":")
        if local != local_ufrag:
            return 401, "Unauthorized"
        if remote_ufrag is not None and remote != remote_ufrag:
            return 401, "Unauthorized"
        if not message.check_integrity(local_password.encode()):
            return 401, "Unauthorized"
        if message.get(FINGERPRINT) is not None and not message.check_fingerprint():
            return 400, "Bad Request"
        return None

    def get_timer(self) -> float | None:
        """When consent for the selected address runs out."""
        if self.state is not IceState.CONNECTED or self.selected is None:
            return None
        return self.valid.get(self.selected, 0.0) + self.consent_timeout

    def handle_timer(self, now: float) -> list[IceEvent]:
        """Consent freshness (RFC 7675 §5.1)."""
        deadline = self.get_timer()
        if deadline is None or now < deadline or self.selected is None:
            return []
        self.state = IceState.FAILED
        return [ConsentLost(self.selected)]

    def accepts_media_from(self, address: Address) -> bool:
        """Media is taken only from addresses that passed a check (no RTP bleed)."""
        return address in self.valid
