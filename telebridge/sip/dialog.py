"""Dialog state (RFC 3261 §12), sans-I/O.

Rules of operation:

* A dialog is identified by Call-ID, local tag and remote tag (§12). Its
  state is the RFC's: local and remote sequence numbers, local and remote
  URI (kept as the whole From/To value so display names survive), remote
  target, route set and secure flag, plus the local Contact and the CSeq
  number of the last INVITE (for the ACK of its 2xx).
* The UAC builds it from its request and a 101-199 response with a To tag
  or a 2xx (§12.1.2): route set = Record-Route reversed, remote target =
  the response's Contact. The UAS builds it from the request it answers
  (§12.1.1): route set = Record-Route as received, remote target = the
  request's Contact. A peer without tags (RFC 2543) has the empty tag.
* Early until a 2xx; :meth:`Dialog.update_from_response` confirms a UAC's
  dialog (recomputing the route set and target from the 2xx, §13.2.2.4),
  ends an early one on a 300-699 (§12.3), and ends any on 408 or 481
  (§12.2.1.2). A UAS confirms its dialog with :meth:`Dialog.confirm` when
  it sends the 2xx. A BYE, sent or received, ends the dialog.
* Target refresh (INVITE and UPDATE, RFC 3311): a request from the peer or
  the 2xx to ours with a Contact replaces the remote target (§12.2).
* :meth:`Dialog.new_request` builds in-dialog requests (§12.2.1.1): the
  next local CSeq (an ACK reuses the last INVITE's, §13.2.2.4; an empty
  UAS sequence starts at 1), both tags, and routing: loose (first route
  has ``lr``: Request-URI = remote target, Route = route set) or strict
  (Request-URI = first route, Route = the rest plus the remote target).
  Strict routing is the RFC 2543 fallback: it is built as §12.2.1.1 says
  but not tested against a real strict router. CANCEL is never built
  here: it copies the INVITE it cancels (§9.1, ``transaction.build_cancel``).
* :meth:`Dialog.receive_request` checks a request from the peer and
  raises :class:`DialogError` carrying the status to answer: 481 if it
  belongs to another dialog, 500 if its CSeq is lower than the last
  (§12.2.2). Local misuse raises :class:`ValueError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Headers, Request, Response
from telebridge.sip.uri import NameAddr, SipUri, Via, parse_name_addr

TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


class DialogError(SipParseError):
    """A message from the peer that does not fit the dialog.

    ``status`` is the response to answer a request with: 481 when it is
    not for this dialog, 500 when it is out of order (§12.2.2), 400 when it
    lacks what a dialog needs (tags, one Contact).
    """


class DialogState(enum.Enum):
    """RFC 3261 §12: early (after a 1xx with tag), confirmed (after 2xx), terminated."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(slots=True)
class Dialog:
    """One side's view of a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str
    #: The local URI as a From/To value, with the local tag.
    local: NameAddr
    #: The remote URI as a From/To value, with the remote tag.
    remote: NameAddr
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_seq: int | None = None
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    #: Our Contact header value, sent on target refresh requests.
    local_contact: str | None = None
    #: CSeq number of the last INVITE we sent in this dialog (its ACK reuses it).
    invite_seq: int | None = None

    @property
    def id(self) -> tuple[str, str, str]:
        """(Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def local_uri(self) -> SipUri:
        """The local URI (§12.1)."""
        return self.local.uri

    @property
    def remote_uri(self) -> SipUri:
        """The remote URI (§12.1)."""
        return self.remote.uri

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog our ``request`` and the peer's 101-299 ``response`` create (§12.1.2).

        The secure flag follows a SIPS Request-URI; that the request went
        over TLS is the caller's to guarantee.
        """
        local_tag = request.from_tag
        if not local_tag:
            raise ValueError("our request's From has no tag")
        remote_tag = response.to_tag
        if not 100 < response.status < 300 or (response.status < 200 and not remote_tag):
            raise DialogError(f"a {response.status} response does not create a dialog")
        number = request.cseq[0]
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag or "",
            local=request.from_,
            remote=response.to,
            remote_target=_contact_uri(response),
            route_set=response.headers.get_all("Record-Route")[::-1],
            local_seq=number,
            secure=request.uri.lower().startswith("sips:"),
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            local_contact=request.headers.get("Contact"),
            invite_seq=number if request.method == "INVITE" else None,
        )

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, contact: str) -> Dialog:
        """The early dialog we create by answering ``request`` with ``local_tag`` (§12.1.1).

        ``contact`` is our Contact header value. Call :meth:`confirm` once
        the 2xx is sent. The secure flag follows a SIPS Request-URI; that
        the request came over TLS is the caller's to check.
        """
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local=request.to.with_tag(local_tag),
            remote=request.from_,
            remote_target=_contact_uri(request),
            route_set=request.headers.get_all("Record-Route"),
            remote_seq=request.cseq[0],
            secure=request.uri.lower().startswith("sips:"),
            local_contact=contact,
        )

    def confirm(self) -> None:
        """We sent the 2xx: the dialog is confirmed (§12.1.1)."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def update_from_response(self, response: Response) -> None:
        """Apply the peer's response to a request we sent in this dialog."""
        if response.call_id != self.call_id or (response.to_tag or "") != self.remote_tag:
            raise DialogError("the response belongs to another dialog", status=481)
        status, method = response.status, response.cseq[1]
        if status in (408, 481):
            # §12.2.1.2: the peer lost the dialog, or never answers in it.
            self.state = DialogState.TERMINATED
        elif status >= 300 and method == "INVITE" and self.state is DialogState.EARLY:
            self.state = DialogState.TERMINATED  # §12.3
        elif 200 <= status < 300:
            if self.state is DialogState.EARLY and method == "INVITE":
                # §13.2.2.4: the route set is recomputed from the 2xx.
                self.route_set = response.headers.get_all("Record-Route")[::-1]
                self.state = DialogState.CONFIRMED
            if method in TARGET_REFRESH and response.headers.get("Contact") is not None:
                self.remote_target = _contact_uri(response)

    def receive_request(self, request: Request) -> None:
        """Accept an in-dialog request from the peer, or raise :class:`DialogError`.

        §12.2.2: the request must carry this dialog's Call-ID and tags (481)
        and, except for ACK and CANCEL, a CSeq no lower than the last (500).
        A target refresh moves the remote target; a BYE ends the dialog.
        """
        if (
            request.call_id != self.call_id
            or (request.from_tag or "") != self.remote_tag
            or request.to_tag != self.local_tag
        ):
            raise DialogError("the request belongs to no such dialog", status=481)
        if request.method not in ("ACK", "CANCEL"):
            number = request.cseq[0]
            if self.remote_seq is not None and number < self.remote_seq:
                raise DialogError(f"CSeq {number} is lower than {self.remote_seq}", status=500)
            self.remote_seq = number
        if request.method in TARGET_REFRESH and request.headers.get("Contact") is not None:
            self.remote_target = _contact_uri(request)
        if request.method == "BYE":
            self.state = DialogState.TERMINATED

    def new_request(
        self,
        method: str,
        via: Via | str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1); ``via`` is our Via, with a fresh branch.

        ACK (for a 2xx, §13.2.2.4) reuses the CSeq number of the last
        INVITE; every other method takes the next local sequence number.
        INVITE and UPDATE carry our Contact (target refresh).
        """
        if method == "CANCEL":
            raise ValueError("CANCEL is not an in-dialog request: build it from the INVITE (§9.1)")
        if method == "ACK":
            if self.invite_seq is None:
                raise ValueError("no INVITE was sent in this dialog, so there is nothing to ACK")
            number = self.invite_seq
        else:
            number = self.local_seq = 1 if self.local_seq is None else self.local_seq + 1
            if method == "INVITE":
                self.invite_seq = number
        uri, routes = self._routing()
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{number} {method}")
        if method in TARGET_REFRESH and self.local_contact is not None:
            headers.add("Contact", self.local_contact)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return Request(headers=headers, body=body, method=method, uri=str(uri))

    def _routing(self) -> tuple[SipUri, list[str]]:
        """Request-URI and Route values for the next request (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_name_addr(self.route_set[0]).uri
        if "lr" in first.params:
            return self.remote_target, list(self.route_set)
        # Strict routing: the first route becomes the Request-URI, without
        # what a Request-URI may not carry (§19.1.1: method, headers), and
        # the remote target goes last in Route.
        request_uri = replace(first, params=first.params.without("method"), headers=None)
        return request_uri, [*self.route_set[1:], f"<{self.remote_target}>"]


def _contact_uri(message: Request | Response) -> SipUri:
    contacts = message.headers.get_all("Contact")
    if len(contacts) != 1:
        raise DialogError(f"a dialog needs exactly one Contact, not {len(contacts)}")
    return parse_name_addr(contacts[0]).uri
