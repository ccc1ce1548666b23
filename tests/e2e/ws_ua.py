"""A minimal SIP-over-WebSocket user agent for tests, on top of :mod:`wsclient`.

It behaves like JsSIP on the wire (``.invalid`` Via and Contact hosts,
outbound ``+sip.instance``/``reg-id``) so the gateway cannot tell it from a
browser; the media side is whatever the test plugs in (aiortc, a raw SDP).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import jwt

from telebridge.sip.message import Request, Response, parse_message
from tests.e2e.harness import LOOPBACK, TOKEN_SECRET
from tests.e2e.wsclient import WebSocket


def token_for(user: str, ttl: int = 120) -> str:
    """An HS256 token as an app server would mint it."""
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, TOKEN_SECRET, algorithm="HS256")


@dataclass
class WsUserAgent:
    """One browser-like SIP user over one WebSocket."""

    user: str
    web_port: int
    instance: str = field(default_factory=lambda: f"<urn:uuid:{uuid.uuid4()}>")
    host: str = field(default_factory=lambda: f"{uuid.uuid4().hex[:10]}.invalid")
    cseq: int = 0

    def __post_init__(self) -> None:
        self.ws = WebSocket(LOOPBACK, self.web_port, f"/sip?token={token_for(self.user)}", timeout=15.0)

    def _headers(self, method: str, call_id: str, to: str, from_tag: str, to_tag: str | None = None, cseq: int | None = None) -> str:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to_value = f"<{to}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
            "Max-Forwards: 70\r\n"
            f"To: {to_value}\r\n"
            f"From: <sip:{self.user}@{LOOPBACK}>;tag={from_tag}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@{self.host};transport=ws;ob>;+sip.instance=\"{self.instance}\";reg-id=1\r\n"
        )

    def register(self, expires: int = 300) -> Response:
        """REGISTER with RFC 5626 outbound; returns the final response."""
        call_id = f"reg-{self.instance[10:22]}"
        message = (
            f"REGISTER sip:{LOOPBACK} SIP/2.0\r\n"
            + self._headers("REGISTER", call_id, f"sip:{self.user}@{LOOPBACK}", "regtag")
            + f"Expires: {expires}\r\nSupported: path, outbound\r\nContent-Length: 0\r\n\r\n"
        )
        self.ws.send_text(message)
        return self.final_response()

    def invite(self, target: str, sdp: str) -> Call:
        """Send an INVITE with ``sdp``; the call's responses are read with :meth:`final_response`."""
        call = Call(self, f"{uuid.uuid4().hex}@test", f"sip:{target}@{LOOPBACK}", uuid.uuid4().hex[:8])
        self.cseq += 1
        call.invite_cseq = self.cseq
        message = (
            f"INVITE {call.remote_uri} SIP/2.0\r\n"
            + self._headers("INVITE", call.call_id, call.remote_uri, call.local_tag, cseq=call.invite_cseq)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
        )
        self.ws.send_text(message)
        return call

    def receive(self) -> Request | Response:
        """The next SIP message from the gateway."""
        message = parse_message(self.ws.recv_message())
        return message

    def final_response(self) -> Response:
        """Read until a final response; requests in between are left unanswered."""
        while True:
            message = self.receive()
            if isinstance(message, Response) and message.status >= 200:
                return message

    def send(self, text: str) -> None:
        self.ws.send_text(text)

    def close(self, code: int = 1000) -> None:
        self.ws.close(code)


@dataclass
class Call:
    """A dialog this UA started."""

    ua: WsUserAgent
    call_id: str
    remote_uri: str
    local_tag: str
    remote_tag: str | None = None
    invite_cseq: int = 0
    #: The final response to the INVITE, once a test has read it.
    answer: Response | None = None

    def ack(self, response: Response) -> None:
        """ACK a 2xx (its own transaction-less request, §13.2.2.4)."""
        self.remote_tag = response.to_tag
        self.ua.send(
            f"ACK {self.remote_uri} SIP/2.0\r\n"
            + self.ua._headers("ACK", self.call_id, self.remote_uri, self.local_tag, self.remote_tag, cseq=self.invite_cseq)
            + "Content-Length: 0\r\n\r\n"
        )

    def reinvite(self, sdp: str) -> Response:
        """A re-INVITE in this dialog (hold, resume); its 2xx is ACKed; returns the final response."""
        self.ua.cseq += 1
        self.invite_cseq = self.ua.cseq
        self.ua.send(
            f"INVITE {self.remote_uri} SIP/2.0\r\n"
            + self.ua._headers("INVITE", self.call_id, self.remote_uri, self.local_tag, self.remote_tag, cseq=self.invite_cseq)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
        )
        response = self.ua.final_response()
        if response.status == 200:
            self.ack(response)
        return response

    def bye(self) -> Response:
        """BYE; returns the final response."""
        self.ua.send(
            f"BYE {self.remote_uri} SIP/2.0\r\n"
            + self.ua._headers("BYE", self.call_id, self.remote_uri, self.local_tag, self.remote_tag)
            + "Content-Length: 0\r\n\r\n"
        )
        return self.ua.final_response()


def answer_request(request: Request, status: int, to_tag: str, body: str = "", contact_host: str = "x.invalid") -> str:
    """A response to a request from the gateway, as a browser would write it."""
    headers = [f"SIP/2.0 {status} {'OK' if status == 200 else 'Ringing' if status == 180 else 'Response'}"]
    for name, value in request.headers:
        key = name.lower()
        if key in ("via", "v", "from", "f", "call-id", "i", "cseq"):
            headers.append(f"{name}: {value}")
        elif key in ("to", "t"):
            headers.append(f"{name}: {value}" if ";tag=" in value else f"{name}: {value};tag={to_tag}")
    if status < 300 and status > 100:
        headers.append(f"Contact: <sip:callee@{contact_host};transport=ws>")
    if body:
        headers.append("Content-Type: application/sdp")
    headers.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(headers) + "\r\n\r\n" + body
