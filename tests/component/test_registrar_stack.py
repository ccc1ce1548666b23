"""The SIP stack, the embedded router and the registrar over fake flows on a Clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.task import Clock

from telebridge.calls.registrar import Registrar
from telebridge.calls.routing import EmbeddedRouter
from telebridge.metrics import Counters
from telebridge.sip.auth import DigestClient, DigestServer
from telebridge.sip.message import Message, Request, Response, parse_message
from telebridge.sip.stack import SipStack


@dataclass(eq=False)
class FakeFlow:
    """A flow that records what is sent over it."""

    transport_name: str = "UDP"
    reliable: bool = False
    peer: tuple[str, int] = ("127.0.0.1", 5070)
    local: tuple[str, int] = ("127.0.0.1", 5060)
    identity: str | None = None
    sent: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def send_response(self, response: Response) -> None:
        self.sent.append(response)

    def statuses(self) -> list[int]:
        return [m.status for m in self.sent if isinstance(m, Response)]


def bearer_subject(token: str, now: float) -> str | None:
    """Stands in for the JWT verifier: ``good-<user>`` is a valid token for user."""
    return token[5:] if token.startswith("good-") else None


def make_stack() -> tuple[SipStack, Clock, Registrar, Counters]:
    clock, counters, registrar = Clock(), Counters(), Registrar(min_expires=60)
    router = EmbeddedRouter(
        bearer_subject=bearer_subject,
        registrar=registrar,
        digest=DigestServer("telebridge", algorithms=("MD5", "SHA-256")),
        passwords={"100": "pw100"}.get,
        domains=frozenset({"127.0.0.1"}),
        counters=counters,
        new_tag=lambda: "tag1",
    )
    return SipStack(clock, router, counters), clock, registrar, counters


def request(method: str, user: str = "100", *, cseq: int = 1, extra: str = "", uri: str | None = None, branch: str | None = None) -> Request:
    raw = (
        f"{method} {uri or 'sip:127.0.0.1'} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch or f'z9hG4bK{method}{cseq}{user}'};rport\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag=f1\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: call-{user}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:{user}@127.0.0.1:5070>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def digest_register(stack: SipStack, flow: FakeFlow, password: str, expires: int = 60) -> int:
    stack.message_received(request("REGISTER", extra=f"Expires: {expires}\r\n"), flow)
    challenge = flow.sent[-1]
    assert isinstance(challenge, Response) and challenge.status == 401
    client = DigestClient("100", password)
    authorization = client.authorization(challenge.headers.get_all("WWW-Authenticate"), "REGISTER", "sip:127.0.0.1")
    stack.message_received(request("REGISTER", cseq=2, extra=f"Expires: {expires}\r\nAuthorization: {authorization}\r\n"), flow)
    return flow.statuses()[-1]


def test_phone_registers_with_digest_and_expiry_runs_on_the_stack_timer() -> None:
    """RFC 3261 §10.3 + §22: 401, then 200; the binding ends when its time is up."""
    stack, clock, registrar, _ = make_stack()
    flow = FakeFlow()
    assert digest_register(stack, flow, "pw100") == 200
    assert len(registrar) == 1
    clock.advance(59)
    assert len(registrar) == 1
    clock.advance(1)
    assert len(registrar) == 0
    clock.advance(64 * 0.5)
    assert len(stack.layer) == 0 and clock.getDelayedCalls() == []


def test_wrong_password_gets_403_and_is_counted() -> None:
    """A failed digest check is refused, never 200."""
    stack, _, registrar, counters = make_stack()
    flow = FakeFlow()
    assert digest_register(stack, flow, "nope") == 403
    assert len(registrar) == 0
    assert counters.total("sip_auth_failures_total") == 1


def test_unknown_user_is_challenged_like_a_known_one() -> None:
    """No user enumeration: an unknown user gets the same 401 as a known one."""
    stack, _, _, _ = make_stack()
    flow = FakeFlow()
    stack.message_received(request("REGISTER", user="999"), flow)
    assert flow.statuses() == [401]


def test_browser_flow_registers_by_token_identity_only_as_itself() -> None:
    """Issue 2 §6: a WebSocket's token fixes its user; any other From/To gets 403."""
    stack, _, registrar, _ = make_stack()
    ws = FakeFlow(transport_name="WSS", reliable=True, identity="alice")
    stack.message_received(request("REGISTER", user="alice"), ws)
    stack.message_received(request("REGISTER", user="bob", cseq=2), ws)
    assert ws.statuses() == [200, 403]
    assert [b.user for b in registrar.lookup("alice", 0)] == ["alice"]
    stack.flow_closed(ws)
    assert len(registrar) == 0


def test_options_gets_200_with_allow() -> None:
    """RFC 3261 §11.2: OPTIONS lists what we support."""
    stack, _, _, _ = make_stack()
    flow = FakeFlow()
    stack.message_received(request("OPTIONS", user="anyone"), flow)
    [reply] = flow.sent
    assert isinstance(reply, Response) and reply.status == 200
    assert "REGISTER" in (reply.headers.get("Allow") or "")


def test_unknown_user_404_and_unsupported_method_405_with_allow() -> None:
    """Issue 2 §7: unknown users 404; methods we do not handle 405 with Allow."""
    stack, clock, _, _ = make_stack()
    flow = FakeFlow()
    stack.message_received(request("MESSAGE", user="100", uri="sip:nobody@127.0.0.1"), flow)
    stack.message_received(request("MESSAGE", user="100", cseq=2, uri="sip:100@127.0.0.1"), flow)
    assert flow.statuses() == [404, 405]
    assert flow.sent[-1].headers.get("Allow")


def test_max_forwards_zero_gets_483() -> None:
    """RFC 3261 §16.3: Max-Forwards 0 on a request not for us to answer."""
    stack, _, _, _ = make_stack()
    flow = FakeFlow()
    stack.message_received(request("MESSAGE", extra="Max-Forwards: 0\r\n", uri="sip:100@127.0.0.1"), flow)
    assert flow.statuses() == [483]


def test_retransmitted_register_is_answered_from_the_transaction() -> None:
    """§17.2.2: a retransmission gets the same response, without a second binding change."""
    stack, _, _, counters = make_stack()
    flow = FakeFlow()
    stack.message_received(request("REGISTER"), flow)
    stack.message_received(request("REGISTER"), flow)
    assert flow.statuses() == [401, 401]
    assert counters.get("sip_requests_total", method="REGISTER") == 1


def test_invite_cancelled_before_answer_gets_487_and_cancel_200() -> None:
    """§9.2: CANCEL is answered 200 and the pending INVITE ends with 487."""
    stack, clock, _, _ = make_stack()
    flow = FakeFlow()
    # The router answers INVITE at once today, so drive the layer directly:
    # a pending INVITE server transaction, then its CANCEL.
    invite = request("INVITE", uri="sip:100@127.0.0.1", branch="z9hG4bKinv")
    stack.layer.receive(invite, flow, False, clock.seconds())
    stack.message_received(request("CANCEL", uri="sip:100@127.0.0.1", branch="z9hG4bKinv"), flow)
    assert sorted(flow.statuses()) == [200, 487]
    clock.advance(64)
    assert len(stack.layer) == 0


def test_browser_invite_with_someone_elses_from_gets_403() -> None:
    """Issue 2 §6: an INVITE whose From user is not the token's sub is refused."""
    stack, _, _, _ = make_stack()
    ws = FakeFlow(transport_name="WSS", reliable=True, identity="alice")
    stack.message_received(request("INVITE", user="mallory", uri="sip:100@127.0.0.1"), ws)
    assert ws.statuses() == [403]


def test_closed_connection_fails_its_pending_transactions() -> None:
    """RFC 3261 §17.2.4: a transaction whose connection is gone ends; nothing is left."""
    stack, clock, _, counters = make_stack()
    ws = FakeFlow(transport_name="WSS", reliable=True, identity="alice")
    invite = request("INVITE", user="alice", uri="sip:100@127.0.0.1", branch="z9hG4bKpending")
    stack.layer.receive(invite, ws, True, clock.seconds())
    assert len(stack.layer) == 1
    stack.flow_closed(ws)
    assert len(stack.layer) == 0
    assert counters.total("sip_transport_failures_total") == 1


def test_bearer_token_on_register_must_be_valid_and_name_the_websocket_user() -> None:
    """INTEROP.md: JsSIP's authorization_jwt sends ``Authorization: Bearer``;
    a valid one for the same user is accepted, an invalid or foreign one is 403."""
    stack, _, registrar, counters = make_stack()
    ws = FakeFlow(transport_name="WSS", reliable=True, identity="alice")
    stack.message_received(request("REGISTER", user="alice", extra="Authorization: Bearer good-alice\r\n"), ws)
    stack.message_received(request("REGISTER", user="alice", cseq=2, extra="Authorization: Bearer expired\r\n"), ws)
    stack.message_received(request("REGISTER", user="alice", cseq=3, extra="Authorization: bearer good-bob\r\n"), ws)
    assert ws.statuses() == [200, 403, 403]
    assert len(registrar) == 1
    assert counters.total("sip_auth_failures_total") == 2
