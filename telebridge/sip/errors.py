"""The one error type of the SIP core.

Like h11's ``RemoteProtocolError``, a :class:`SipParseError` carries what the
transport needs to answer: the status code to send, and, when enough of a
request parsed to address a reply (Via, From, To, Call-ID, CSeq), that
partial request so a response can be built from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telebridge.sip.message import Request


class SipParseError(Exception):
    """Malformed SIP input from a peer.

    ``status`` is the response code a server should send (400 by default,
    505 for an unsupported version, 513 for an oversized message, 416 for an
    unsupported URI scheme). ``request`` is the partially parsed request when
    its routing headers were readable, else ``None``.
    """

    def __init__(self, reason: str, status: int = 400, request: Request | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request = request
