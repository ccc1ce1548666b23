"""Dialog state (RFC 3261 §12), sans-I/O.

Rules of operation:

* A dialog is identified by Call-ID, local tag and remote tag (§12).
* The UAC builds it from its INVITE and a 1xx-with-tag or 2xx response
  (§12.1.2): route set = Record-Route reversed, remote target = Contact.
  The UAS builds it from the request it answers (§12.1.1): route set =
  Record-Route as received.
* An early dialog becomes confirmed on a 2xx; a target refresh (re-INVITE,
  UPDATE, or their 2xx) replaces the remote target (§12.2).
* In-dialog requests take the next local CSeq (ACK reuses the INVITE's,
  §13.2.2.4), go to the remote target through the route set (loose routing,
  RFC 3261 §12.2.1.1; strict routers are not supported and are refused when
  building the dialog), and carry both tags.
* A request from the peer with a CSeq lower than the last one is out of
  order: the caller answers 500 (§12.2.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from telebridge.sip.errors import SipParseError
from telebridge.sip.message import Headers, Request, Response
from telebridge.sip.uri import NameAddr, SipUri, parse_name_addr

TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


class DialogState(enum.Enum):
    """RFC 3261 §12: early (after a 1xx with tag), confirmed (after 2xx), terminated."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass
class Dialog:
    """One side's view of a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddr
    remote: NameAddr
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> tuple[str, str, str]:
        """(Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAC's request and a tagged 1xx/2xx response create (§12.1.2)."""
        remote_tag = response.to_tag
        local_tag = request.from_tag
        if not remote_tag or not local_tag:
            raise SipParseError("a dialog needs tags on both sides")
        routes = [r for r in response.headers.get_all("Record-Route")][::-1]
        _require_loose(routes)
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local=request.from_,
            remote=response.to,
            remote_target=_contact_uri(response),
            route_set=routes,
            local_seq=request.cseq[0],
            secure=request.uri.lower().startswith("sips:"),
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
        )
        return dialog

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, confirmed: bool = False) -> Dialog:
        """The dialog a UAS creates by answering ``request`` with ``local_tag`` (§12.1.1)."""
        remote_tag = request.from_tag
        if not remote_tag:
            raise SipParseError("the request's From has no tag")
        routes = request.headers.get_all("Record-Route")
        _require_loose(routes)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local=request.to.with_tag(local_tag),
            remote=request.from_,
            remote_target=_contact_uri(request),
            route_set=routes,
            remote_seq=request.cseq[0],
            secure=request.uri.lower().startswith("sips:"),
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY,
        )

    def update_from_response(self, response: Response, method: str) -> None:
        """A 2xx confirms the dialog; a target-refresh 2xx may move the target (§12.2.1.2)."""
        if 200 <= response.status < 300:
            self.state = DialogState.CONFIRMED
            if method in TARGET_REFRESH and response.headers.get("Contact"):
                self.remote_target = _contact_uri(response)

    def receive_request(self, request: Request) -> bool:
        """Accept an in-dialog request from the peer; ``False`` if out of order (→ 500).

        §12.2.2: the remote CSeq must grow (ACK and CANCEL excepted); a
        target-refresh request moves the remote target.
        """
        number = request.cseq[0]
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and number <= self.remote_seq:
                return False
            self.remote_seq = number
        if request.method in TARGET_REFRESH and request.headers.get("Contact"):
            self.remote_target = _contact_uri(request)
        if request.method == "BYE":
            self.state = DialogState.TERMINATED
        return True

    def new_request(self, method: str, via: str, body: bytes = b"", content_type: str | None = None, cseq: int | None = None) -> Request:
        """An in-dialog request (§12.2.1.1); ``via`` is the sender's own Via value.

        ACK for a 2xx passes the INVITE's ``cseq``; every other method takes
        the next local sequence number.
        """
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if content_type is not None:
            headers.add("Content-Type", content_type)
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return Request(headers=headers, body=body, method=method, uri=str(self.remote_target))


def _contact_uri(message: Request | Response) -> SipUri:
    contacts = message.headers.get_all("Contact")
    if len(contacts) != 1:
        raise SipParseError("a dialog needs exactly one Contact")
    return parse_name_addr(contacts[0]).uri


def _require_loose(routes: list[str]) -> None:
    for route in routes:
        if "lr" not in parse_name_addr(route).uri.params:
            raise SipParseError("strict routing (a Record-Route without ;lr) is not supported")
