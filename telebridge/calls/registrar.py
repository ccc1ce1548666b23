"""The registrar's bindings (RFC 3261 §10.3, RFC 5626 outbound), sans-I/O.

Rules of operation:

* :meth:`Registrar.register` handles one REGISTER that the caller has
  already authenticated, and returns the response to send.
* A contact's ``expires`` parameter beats the Expires header, which beats
  the default; 0 removes the contact; below ``min_expires`` gets 423 with
  Min-Expires; above ``max_expires`` is clamped (§10.3 steps 6-8).
* ``Contact: *`` is valid only alone and with ``Expires: 0`` (§10.3 step 6).
* With ``Supported: outbound`` and ``+sip.instance`` + ``reg-id`` on the
  contact, a binding is keyed by (instance, reg-id): a REGISTER from a new
  WebSocket after a reconnect replaces the old flow (RFC 5626 §6); the 200
  then says ``Require: outbound``. Otherwise bindings are keyed by the
  contact URI's text (a plain string compare, stricter than §19.1.4).
* For the same Call-ID, a CSeq not above the stored one is out of order and
  ignored with 500 (§10.3 step 7).
* Every binding remembers the flow it arrived on; :meth:`drop_flow` ends the
  bindings of a closed connection at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Request, Response, make_response
from telebridge.sip.uri import NameAddr, parse_name_addr


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of a user."""

    user: str
    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int
    flow: Hashable | None
    instance_id: str | None
    reg_id: str | None
    q: float
    registered_at: float

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies this binding among the user's others."""
        if self.instance_id is not None and self.reg_id is not None:
            return ("outbound", self.instance_id, self.reg_id)
        return ("uri", str(self.contact.uri))


class Registrar:
    """All users' bindings, with expiry driven by the caller's clock."""

    def __init__(self, min_expires: int = 60, max_expires: int = 3600, default_expires: int = 600) -> None:
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._bindings: dict[str, dict[tuple[str, ...], Binding]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._bindings.values())

    def users(self) -> list[str]:
        """Users with at least one binding."""
        return list(self._bindings)

    def has_bindings(self, user: str) -> bool:
        """Whether ``user`` has any binding left (expired ones not yet collected count)."""
        return user in self._bindings

    def lookup(self, user: str, now: float) -> list[Binding]:
        """Live bindings of ``user``, best q first, newest first."""
        live = [b for b in self._bindings.get(user, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: (-b.q, -b.registered_at))

    def register(self, request: Request, user: str, flow: Hashable | None, now: float) -> Response:
        """Apply one REGISTER for ``user`` and build its response."""
        try:
            contacts = request.headers.get_all("Contact")
            header_expires = _expires_value(request.headers.get("Expires"))
            call_id = request.call_id
            cseq = request.cseq[0]
            outbound = "outbound" in _option_tags(request.headers.get_all("Supported"))
            if contacts == ["*"]:
                if header_expires != 0:
                    return make_response(request, 400, "Bad Request (Contact * needs Expires: 0)")
                self._bindings.pop(user, None)
                return self._ok(request, user, now, outbound=False)
            if "*" in contacts:
                return make_response(request, 400, "Bad Request (Contact * must be alone)")
            parsed = [parse_name_addr(c) for c in contacts]
            updates = [self._binding_for(na, user, header_expires, call_id, cseq, flow, outbound, now) for na in parsed]
        except SipParseError as e:
            return make_response(request, 400, f"Bad Request ({e.reason})")
        too_brief = [b for b in updates if 0 < b.expires_at - now < self.min_expires]
        if too_brief:
            response = make_response(request, 423)
            response.headers.add("Min-Expires", str(self.min_expires))
            return response
        current = self._bindings.setdefault(user, {})
        for binding in updates:
            old = current.get(binding.key)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                return make_response(request, 500, "Server Internal Error (out-of-order REGISTER)")
        for binding in updates:
            if binding.expires_at <= now:
                current.pop(binding.key, None)
            else:
                current[binding.key] = binding
        if not current:
            del self._bindings[user]
        uses_outbound = any(b.instance_id is not None and b.reg_id is not None for b in updates)
        return self._ok(request, user, now, outbound=uses_outbound)

    def _binding_for(
        self,
        contact: NameAddr,
        user: str,
        header_expires: int | None,
        call_id: str,
        cseq: int,
        flow: Hashable | None,
        outbound: bool,
        now: float,
    ) -> Binding:
        expires = _expires_value(contact.params.get("expires"))
        if expires is None:
            expires = header_expires if header_expires is not None else self.default_expires
        if expires > 0:
            expires = min(expires, self.max_expires)
        q_text = contact.params.get("q")
        try:
            q = float(q_text) if q_text is not None else 1.0
        except ValueError:
            raise SipParseError(f"bad q value {q_text[:10]!r}") from None
        if not 0 <= q <= 1:
            raise SipParseError("q must be between 0 and 1")
        instance = contact.params.get("+sip.instance")
        reg_id = contact.params.get("reg-id")
        if not outbound:
            # RFC 5626 §6: without "Supported: outbound" it is a plain binding.
            reg_id = None
        return Binding(user, contact, now + expires, call_id, cseq, flow, instance, reg_id, q, now)

    def _ok(self, request: Request, user: str, now: float, outbound: bool) -> Response:
        response = make_response(request, 200)
        for binding in self.lookup(user, now):
            remaining = max(0, int(binding.expires_at - now + 0.5))
            contact = binding.contact
            params = contact.params.with_param("expires", str(remaining))
            response.headers.add("Contact", str(NameAddr(contact.uri, contact.display, params)))
        if outbound:
            response.headers.add("Require", "outbound")
        return response

    def expire(self, now: float) -> list[Binding]:
        """Remove and return every binding whose time is up."""
        removed = []
        for user in list(self._bindings):
            current = self._bindings[user]
            for key, binding in list(current.items()):
                if binding.expires_at <= now:
                    removed.append(current.pop(key))
            if not current:
                del self._bindings[user]
        return removed

    def next_expiry(self) -> float | None:
        """When the next binding expires (``None`` if there are none)."""
        times = [b.expires_at for current in self._bindings.values() for b in current.values()]
        return min(times) if times else None

    def instance_of(self, flow: Hashable) -> str | None:
        """The ``+sip.instance`` a flow registered with (RFC 5626), if any."""
        for bindings in self._bindings.values():
            for binding in bindings.values():
                if binding.flow == flow and binding.instance_id is not None:
                    return binding.instance_id
        return None

    def drop_flow(self, flow: Hashable) -> list[Binding]:
        """End every binding that came over ``flow`` (its connection closed)."""
        removed = []
        for user in list(self._bindings):
            current = self._bindings[user]
            for key, binding in list(current.items()):
                if binding.flow is not None and binding.flow == flow:
                    removed.append(current.pop(key))
            if not current:
                del self._bindings[user]
        return removed


def _expires_value(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise SipParseError(f"bad expires value {text[:20]!r}")
    return int(text)


def _option_tags(values: list[str]) -> set[str]:
    return {v.strip().lower() for v in values}
