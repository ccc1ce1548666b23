"""The transaction layer: matching (RFC 3261 §17.1.3, §17.2.3), CANCEL (§9),
bookkeeping, and a client/server pair over a lossy link on one Clock.

Every scenario ends with the layers' live transaction count back at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from telebridge.sip.message import Message, Request, Response, make_response, parse_message
from telebridge.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    State,
)
from telebridge.sip.transaction_layer import (
    AckReceived,
    CancelReceived,
    LayerEvent,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionLayer,
    TransactionTimedOut,
    TransactionUsageError,
    TransportFailed,
    new_branch,
)

ALICE = ("192.0.2.1", 5060)
BOB = ("198.51.100.2", 5060)


def make_request(
    method: str = "INVITE",
    branch: str = "z9hG4bKlayer1",
    *,
    sent_by: str = "192.0.2.1:5060",
) -> Request:
    raw = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Route: <sip:edge.example.com;lr>\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=caller\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: layer-call-1\r\n"
        f"CSeq: 7 {method}\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def answer(request: Request, status: int, tag: str = "callee") -> Response:
    return make_response(request, status, to_tag=tag)


def sent(events: list[LayerEvent]) -> list[Message]:
    return [e.message for e in events if isinstance(e, SendMessage)]


def statuses(events: list[LayerEvent]) -> list[int]:
    return [m.status for m in sent(events) if isinstance(m, Response)]


def only(events: list[LayerEvent], kind: type) -> list[LayerEvent]:
    return [e for e in events if isinstance(e, kind)]


def drain(layer: TransactionLayer, clock: Clock, until: float = 200.0) -> list[LayerEvent]:
    """Run the layer's timers deadline by deadline until none is left (or ``until``)."""
    events: list[LayerEvent] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        clock.advance(max(0.0, deadline - clock.seconds()))
        events += layer.handle_timer(clock.seconds())
    return events


def receive_invite(layer: TransactionLayer, now: float = 0.0) -> InviteServerTransaction:
    """Feed a new INVITE; return the server transaction the TU was given."""
    [event] = layer.receive(make_request(), ALICE, False, now)
    assert isinstance(event, RequestReceived) and isinstance(event.transaction, InviteServerTransaction)
    return event.transaction


# --- branches and sending ------------------------------------------------------


def test_new_branch_starts_with_the_magic_cookie_and_uses_the_injected_randomness() -> None:
    """RFC 3261 §8.1.1.7: a branch starts with z9hG4bK and is unique."""
    assert new_branch(lambda n: "ab" * n) == "z9hG4bK" + "ab" * 10
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()


def test_send_request_sends_the_request_unchanged_to_its_destination() -> None:
    """§17.1: the layer adds nothing; the request goes to the destination given."""
    layer = TransactionLayer()
    request = make_request(branch=new_branch())
    wire = request.to_bytes()
    tx, events = layer.send_request(request, BOB, False, 0.0)
    assert isinstance(tx, InviteClientTransaction)
    assert events == [SendMessage(request, BOB)]
    assert request.to_bytes() == wire and len(layer) == 1


def test_send_request_refuses_a_request_without_an_rfc3261_branch() -> None:
    """§8.1.1.7: our requests must carry a z9hG4bK branch, unique among live transactions."""
    layer = TransactionLayer()
    no_branch = make_request()
    no_branch.headers.set("Via", "SIP/2.0/UDP 192.0.2.1:5060")
    with pytest.raises(TransactionUsageError, match="branch"):
        layer.send_request(no_branch, BOB, False, 0.0)
    with pytest.raises(TransactionUsageError, match="branch"):
        layer.send_request(make_request(branch="rfc2543-style"), BOB, False, 0.0)
    layer.send_request(make_request(), BOB, False, 0.0)
    with pytest.raises(TransactionUsageError, match="in use"):
        layer.send_request(make_request(), BOB, False, 0.0)
    with pytest.raises(TransactionUsageError, match="ACK"):
        layer.send_request(make_request("ACK", branch="z9hG4bKack"), BOB, False, 0.0)
    assert len(layer) == 1


# --- matching responses (§17.1.3) -----------------------------------------------


def test_response_matches_its_client_transaction_by_branch_and_cseq_method() -> None:
    """§17.1.3: an INVITE and its CANCEL share a branch; the CSeq method tells their
    responses apart."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(make_request(), BOB, False, 0.0)
    layer.receive(answer(invite_tx.request, 180), BOB, False, 0.1)
    [cancel] = sent(layer.cancel(invite_tx, 0.2))
    assert isinstance(cancel, Request)
    ok = answer(cancel, 200)
    [cancel_done] = layer.receive(ok, BOB, False, 0.3)
    assert isinstance(cancel_done, ResponseReceived)
    assert cancel_done.transaction is not invite_tx and cancel_done.response is ok
    terminated = answer(invite_tx.request, 487)
    events = layer.receive(terminated, BOB, False, 0.4)
    assert ResponseReceived(invite_tx, terminated) in events
    assert [m.method for m in sent(events) if isinstance(m, Request)] == ["ACK"]
    drain(layer, clock)
    assert len(layer) == 0


def test_response_matching_no_transaction_is_a_stray_response_for_the_tu() -> None:
    """§17.1.3 / §13.2.2.4: a 2xx retransmitted after the INVITE transaction ended
    still reaches the TU, which must ACK it."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(make_request(), BOB, False, 0.0)
    ok = answer(invite_tx.request, 200)
    assert layer.receive(ok, BOB, False, 0.1) == [ResponseReceived(invite_tx, ok)]
    drain(layer, clock)
    assert len(layer) == 0
    assert layer.receive(ok, BOB, False, clock.seconds()) == [StrayResponse(ok, BOB)]
    other_branch = answer(make_request(branch="z9hG4bKother"), 200)
    assert layer.receive(other_branch, BOB, False, 0.0) == [StrayResponse(other_branch, BOB)]


# --- matching requests (§17.2.3) ------------------------------------------------


def test_new_request_reaches_the_tu_with_its_transaction_and_source() -> None:
    """§17.2.3: a request matching no transaction creates one for the TU to answer on."""
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    [event] = layer.receive(request, ALICE, False, 0.0)
    assert isinstance(event, RequestReceived)
    assert isinstance(event.transaction, NonInviteServerTransaction)
    assert event.request is request and event.source == ALICE
    assert event.transaction.peer == ALICE and len(layer) == 1


def test_retransmitted_request_is_answered_from_its_transaction() -> None:
    """§17.2.2: a retransmission (same branch, sent-by, method) re-sends the last
    response and does not reach the TU again; the response goes to the source."""
    clock = Clock()
    layer = TransactionLayer()
    [event] = layer.receive(make_request("REGISTER"), ALICE, False, 0.0)
    assert isinstance(event, RequestReceived)
    challenge = answer(event.request, 401)
    assert layer.send_response(event.transaction, challenge, 0.1) == [SendMessage(challenge, ALICE)]
    assert layer.receive(make_request("REGISTER"), ALICE, False, 0.6) == [SendMessage(challenge, ALICE)]
    assert len(layer) == 1
    drain(layer, clock)
    assert len(layer) == 0 and clock.seconds() == 32.1


def test_same_branch_from_another_sent_by_is_a_new_transaction() -> None:
    """§17.2.3: matching needs branch and sent-by (and method) to be equal."""
    layer = TransactionLayer()
    first = layer.receive(make_request("OPTIONS"), ALICE, False, 0.0)
    second = layer.receive(make_request("OPTIONS", sent_by="203.0.113.9:5060"), BOB, False, 0.0)
    third = layer.receive(make_request("INFO"), ALICE, False, 0.0)
    assert [type(e) for e in first + second + third] == [RequestReceived] * 3
    assert len(layer) == 3


def test_sent_by_host_is_matched_without_regard_to_case() -> None:
    """§17.2.3 compares sent-by as a host, which is case-insensitive."""
    layer = TransactionLayer()
    layer.receive(make_request("OPTIONS", sent_by="Alice.Example.COM"), ALICE, False, 0.0)
    assert layer.receive(make_request("OPTIONS", sent_by="alice.example.com"), ALICE, False, 0.1) == []
    assert len(layer) == 1


def test_reliable_flag_of_receive_sets_the_server_transaction_timers() -> None:
    """§17.2.2: J is 0 s when the request came over a reliable transport."""
    layer = TransactionLayer()
    [event] = layer.receive(make_request("OPTIONS"), ALICE, True, 0.0)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.transaction, answer(event.request, 200), 0.1)
    assert len(layer) == 0


# --- ACK (§17.2.3, §13.3.1.4, RFC 6026) ------------------------------------------


def test_ack_for_a_non_2xx_is_absorbed_by_the_invite_transaction() -> None:
    """§17.2.1: the ACK for our 486 matches the INVITE transaction and stops timer G."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    layer.send_response(invite_tx, answer(invite_tx.request, 486), 0.0)
    assert layer.receive(make_request("ACK"), ALICE, False, 0.1) == []
    assert invite_tx.state is State.CONFIRMED
    assert drain(layer, clock) == []
    assert len(layer) == 0 and clock.seconds() == 5.1


def test_ack_for_a_2xx_on_its_own_branch_goes_to_the_tu() -> None:
    """§13.3.1.4: the ACK for a 2xx is a new transaction-less request for the TU."""
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    layer.send_response(invite_tx, answer(invite_tx.request, 200), 0.0)
    ack = make_request("ACK", branch="z9hG4bKack2xx")
    assert layer.receive(ack, ALICE, False, 0.1) == [AckReceived(ack, ALICE)]
    assert len(layer) == 1


def test_ack_reusing_the_invite_branch_in_accepted_goes_to_the_tu() -> None:
    """RFC 6026 §7.1: an ACK matching the INVITE transaction in Accepted goes to the TU."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    layer.send_response(invite_tx, answer(invite_tx.request, 200), 0.0)
    ack = make_request("ACK")
    assert layer.receive(ack, ALICE, False, 0.1) == [AckReceived(ack, ALICE, invite_tx)]
    drain(layer, clock)
    assert len(layer) == 0 and clock.seconds() == 32.0


# --- receiving CANCEL (§9.2) ----------------------------------------------------


def test_cancel_of_a_pending_invite_gets_200_and_reaches_the_tu() -> None:
    """§9.2: the layer answers the CANCEL 200 (with the To tag of the INVITE's
    responses) and tells the TU, which ends the INVITE with 487."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    layer.send_response(invite_tx, answer(invite_tx.request, 180, tag="bob-1"), 0.1)
    cancel = make_request("CANCEL")
    events = layer.receive(cancel, ALICE, False, 0.5)
    [ok] = sent(events)
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq == (7, "CANCEL")
    assert ok.to_tag == "bob-1"
    assert events[1:] == [CancelReceived(invite_tx, cancel)]
    assert statuses(layer.send_response(invite_tx, answer(invite_tx.request, 487, tag="bob-1"), 0.5)) == [487]
    assert layer.receive(make_request("ACK"), ALICE, False, 0.6) == []
    drain(layer, clock)
    assert len(layer) == 0


def test_retransmitted_cancel_gets_the_200_again_and_the_tu_hears_once() -> None:
    """§17.2.2: the CANCEL has its own non-INVITE transaction that absorbs retransmissions."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    first = layer.receive(make_request("CANCEL"), ALICE, False, 0.3)
    again = layer.receive(make_request("CANCEL"), ALICE, False, 0.8)
    assert statuses(first) == [200] and len(only(first, CancelReceived)) == 1
    assert statuses(again) == [200] and only(again, CancelReceived) == []
    layer.send_response(invite_tx, answer(invite_tx.request, 487), 0.9)
    layer.receive(make_request("ACK"), ALICE, False, 1.0)
    drain(layer, clock)
    assert len(layer) == 0


def test_cancel_after_the_final_response_gets_200_and_changes_nothing() -> None:
    """§9.2: a CANCEL matching an answered INVITE is answered 200 but has no effect."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    layer.send_response(invite_tx, answer(invite_tx.request, 200), 0.1)
    events = layer.receive(make_request("CANCEL"), ALICE, False, 0.2)
    assert statuses(events) == [200] and only(events, CancelReceived) == []
    assert invite_tx.state is State.ACCEPTED
    drain(layer, clock)
    assert len(layer) == 0


def test_cancel_matching_no_invite_gets_481() -> None:
    """§9.2: with no matching INVITE transaction the CANCEL is answered 481."""
    clock = Clock()
    layer = TransactionLayer()
    events = layer.receive(make_request("CANCEL"), ALICE, False, 0.0)
    assert statuses(events) == [481] and only(events, CancelReceived) == []
    other = layer.receive(make_request("CANCEL", branch="z9hG4bKelse"), ALICE, False, 0.0)
    assert statuses(other) == [481]
    drain(layer, clock)
    assert len(layer) == 0


# --- sending CANCEL (§9.1) ------------------------------------------------------


def test_cancel_before_a_provisional_waits_for_one() -> None:
    """§9.1: no CANCEL before a provisional response; it goes out with the first one,
    copying Request-URI, Call-ID, From, To, CSeq number, top Via and Route."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(make_request(), BOB, False, 0.0)
    assert layer.cancel(invite_tx, 0.1) == []
    assert layer.cancel(invite_tx, 0.2) == []
    assert len(layer) == 1
    ringing = answer(invite_tx.request, 180)
    events = layer.receive(ringing, BOB, False, 0.3)
    assert events[0] == ResponseReceived(invite_tx, ringing)
    [cancel] = sent(events)
    invite = invite_tx.request
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert only(events, SendMessage) == [SendMessage(cancel, BOB)]
    assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
    assert cancel.headers.get("From") == invite.headers.get("From")
    assert cancel.headers.get("To") == invite.headers.get("To") and cancel.to_tag is None
    assert cancel.cseq == (7, "CANCEL")
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    assert cancel.headers.get_all("Route") == invite.headers.get_all("Route")
    assert isinstance(parse_message(cancel.to_bytes()), Request)
    assert len(layer) == 2
    layer.receive(answer(cancel, 200), BOB, False, 0.4)
    layer.receive(answer(invite, 487), BOB, False, 0.5)
    drain(layer, clock)
    assert len(layer) == 0


def test_cancel_after_a_provisional_is_sent_at_once_and_only_once() -> None:
    """§9.1: once a provisional arrived the CANCEL goes out; asking again adds nothing."""
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(make_request(), BOB, True, 0.0)
    layer.receive(answer(invite_tx.request, 183), BOB, True, 0.1)
    [cancel] = sent(layer.cancel(invite_tx, 0.2))
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert layer.cancel(invite_tx, 0.3) == []
    layer.receive(answer(cancel, 200), BOB, True, 0.4)
    events = layer.receive(answer(invite_tx.request, 487), BOB, True, 0.5)
    assert [m.method for m in sent(events) if isinstance(m, Request)] == ["ACK"]
    assert len(layer) == 0


def test_pending_cancel_is_dropped_when_a_final_response_comes_first() -> None:
    """§9.1: a request with a final response is not cancelled."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(make_request(), BOB, False, 0.0)
    layer.cancel(invite_tx, 0.1)
    ok = answer(invite_tx.request, 200)
    assert layer.receive(ok, BOB, False, 0.2) == [ResponseReceived(invite_tx, ok)]
    assert layer.receive(answer(invite_tx.request, 180), BOB, False, 0.3) == []
    assert layer.cancel(invite_tx, 0.4) == []
    drain(layer, clock)
    assert len(layer) == 0


def test_pending_cancel_is_forgotten_when_timer_b_fires() -> None:
    """§17.1.1.2: B ends an unanswered INVITE; its pending CANCEL goes with it."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(make_request(), BOB, False, 0.0)
    layer.cancel(invite_tx, 0.1)
    events = drain(layer, clock)
    assert only(events, TransactionTimedOut) == [TransactionTimedOut(invite_tx)]
    assert len(layer) == 0 and clock.seconds() == 32.0


def test_only_an_invite_client_transaction_can_be_cancelled() -> None:
    """§9.1: CANCEL is for INVITE; the layer refuses anything else."""
    layer = TransactionLayer()
    options_tx, _ = layer.send_request(make_request("OPTIONS"), BOB, False, 0.0)
    with pytest.raises(TransactionUsageError):
        layer.cancel(options_tx, 0.1)


# --- timers and bookkeeping -----------------------------------------------------


def test_get_timer_is_the_earliest_deadline_of_all_transactions() -> None:
    """The adapter arms one timer: the layer's earliest deadline."""
    layer = TransactionLayer()
    assert layer.get_timer() is None
    layer.send_request(make_request("OPTIONS"), BOB, True, 0.0)
    assert layer.get_timer() == 32.0
    receive_invite(layer, now=1.0)
    assert layer.get_timer() == 1.2


def test_timer_values_given_to_the_layer_reach_its_transactions() -> None:
    """RFC 3261 Table 4: T1 (and the 100 Trying delay) are the layer's parameters."""
    layer = TransactionLayer(t1=0.1, trying_delay=0.05)
    layer.send_request(make_request("OPTIONS"), BOB, False, 0.0)
    assert layer.get_timer() == 0.1
    receive_invite(layer)
    assert layer.get_timer() == 0.05


def test_client_timeout_reaches_the_tu_and_leaves_no_transaction() -> None:
    """§17.1.2.2: F fires at 64*T1; the TU sees TransactionTimedOut (a 408)."""
    clock = Clock()
    layer = TransactionLayer()
    tx, _ = layer.send_request(make_request("OPTIONS"), BOB, False, 0.0)
    events = drain(layer, clock)
    assert len(sent(events)) == 10
    assert events[-1] == TransactionTimedOut(tx)
    assert len(layer) == 0


def test_server_timeout_without_ack_leaves_no_transaction() -> None:
    """§17.2.1: H fires at 64*T1 without an ACK."""
    clock = Clock()
    layer = TransactionLayer()
    invite_tx = receive_invite(layer)
    layer.send_response(invite_tx, answer(invite_tx.request, 486), 0.0)
    events = drain(layer, clock)
    assert events[-1] == TransactionTimedOut(invite_tx)
    assert len(layer) == 0


def test_transport_error_ends_every_transaction_of_that_peer() -> None:
    """§17.1.4 / §17.2.4: a failed flow ends the transactions that use it."""
    layer = TransactionLayer()
    to_bob, _ = layer.send_request(make_request(), BOB, True, 0.0)
    layer.send_request(make_request("OPTIONS"), ALICE, True, 0.0)
    from_bob = layer.receive(make_request("INFO", sent_by="198.51.100.2"), BOB, True, 0.0)
    [request_event] = only(from_bob, RequestReceived)
    assert isinstance(request_event, RequestReceived)
    events = layer.transport_error(BOB)
    assert events == [TransportFailed(to_bob), TransportFailed(request_event.transaction)]
    assert len(layer) == 1


# --- a client and a server over a lossy link ------------------------------------


@dataclass
class Endpoint:
    """A layer with an address and a scripted TU that records what it was told."""

    address: Hashable
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    on_request: Callable[[RequestReceived, float], list[Response]] = lambda event, now: []
    on_cancel: Callable[[CancelReceived], list[Response]] = lambda event: []
    heard: list[LayerEvent] = field(default_factory=list)


class LossyPair:
    """Two endpoints joined by a link that drops the messages ``drop`` picks.

    Messages cross the link as bytes and are parsed again, so whatever the
    layers build must be valid on the wire.
    """

    def __init__(self, clock: Clock, drop: Callable[[int, Message], bool]) -> None:
        self.clock = clock
        self.drop = drop
        self.client = Endpoint(ALICE)
        self.server = Endpoint(BOB)
        self.carried = 0
        self.dropped: list[Message] = []

    def peer_of(self, endpoint: Endpoint) -> Endpoint:
        return self.server if endpoint is self.client else self.client

    def handle(self, endpoint: Endpoint, events: list[LayerEvent]) -> None:
        now = self.clock.seconds()
        for event in events:
            if isinstance(event, SendMessage):
                self.carry(endpoint, event.message)
            elif isinstance(event, RequestReceived):
                endpoint.heard.append(event)
                for response in endpoint.on_request(event, now):
                    self.handle(endpoint, endpoint.layer.send_response(event.transaction, response, now))
            elif isinstance(event, CancelReceived):
                endpoint.heard.append(event)
                for response in endpoint.on_cancel(event):
                    self.handle(endpoint, endpoint.layer.send_response(event.transaction, response, now))
            else:
                endpoint.heard.append(event)

    def carry(self, sender: Endpoint, message: Message) -> None:
        self.carried += 1
        if self.drop(self.carried, message):
            self.dropped.append(message)
            return
        receiver = self.peer_of(sender)
        parsed = parse_message(message.to_bytes())
        self.handle(receiver, receiver.layer.receive(parsed, sender.address, False, self.clock.seconds()))

    def run(self, until: float = 300.0) -> None:
        """Advance the clock through every deadline of both layers."""
        while True:
            deadlines = [t for t in (self.client.layer.get_timer(), self.server.layer.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > until:
                return
            self.clock.advance(max(0.0, min(deadlines) - self.clock.seconds()))
            for endpoint in (self.client, self.server):
                self.handle(endpoint, endpoint.layer.handle_timer(self.clock.seconds()))

    def live(self) -> int:
        return len(self.client.layer) + len(self.server.layer)


def drop_first(n: int) -> Callable[[int, Message], bool]:
    return lambda index, message: index <= n


def is_kind(message: Message, kind: str) -> bool:
    """``kind`` is a method for requests, or ``"486"``-style for responses."""
    if isinstance(message, Request):
        return message.method == kind
    return str(message.status) == kind


def drop_first_of(**counts: int) -> Callable[[int, Message], bool]:
    """Drop the first N messages of each kind, e.g. ``drop_first_of(INVITE=2, ACK=1)``."""
    remaining = {kind.lstrip("_"): n for kind, n in counts.items()}

    def drop(index: int, message: Message) -> bool:
        for kind, n in remaining.items():
            if n and is_kind(message, kind):
                remaining[kind] = n - 1
                return True
        return False

    return drop


def tu_heard(endpoint: Endpoint, kind: type) -> list[LayerEvent]:
    return [e for e in endpoint.heard if isinstance(e, kind)]


def responses_heard(endpoint: Endpoint) -> list[int]:
    return [e.response.status for e in endpoint.heard if isinstance(e, ResponseReceived)]


@pytest.mark.parametrize(
    ("drop", "lost"),
    [
        (drop_first(0), 0),
        (drop_first(1), 1),
        (drop_first(5), 5),
        (drop_first_of(_200=2), 2),
        (drop_first_of(OPTIONS=1, _200=1), 2),
    ],
    ids=["no loss", "first request", "first five requests", "first two responses", "request and response"],
)
def test_pair_non_invite_completes_over_a_lossy_link(drop: Callable[[int, Message], bool], lost: int) -> None:
    """§17.1.2.2 / §17.2.2: E re-sends the request and the server transaction answers
    each retransmission with its final response; each TU hears of it exactly once."""
    clock = Clock()
    pair = LossyPair(clock, drop)
    pair.server.on_request = lambda event, now: [answer(event.request, 200)]
    _, events = pair.client.layer.send_request(make_request("OPTIONS", branch=new_branch()), BOB, False, 0.0)
    pair.handle(pair.client, events)
    pair.run()
    assert len(pair.dropped) == lost
    assert responses_heard(pair.client) == [200]
    assert len(tu_heard(pair.server, RequestReceived)) == 1
    assert tu_heard(pair.client, TransactionTimedOut) == []
    assert pair.live() == 0


def test_pair_rejected_invite_completes_when_invite_final_and_ack_are_lost() -> None:
    """§17.1.1.2 / §17.2.1: A re-sends the INVITE, G the 486, and the client re-sends
    its ACK from Completed; nobody times out and nothing leaks."""
    clock = Clock()
    pair = LossyPair(clock, drop_first_of(INVITE=2, _486=1, ACK=1))
    pair.server.on_request = lambda event, now: [answer(event.request, 180), answer(event.request, 486)]
    _, events = pair.client.layer.send_request(make_request(branch=new_branch()), BOB, False, 0.0)
    pair.handle(pair.client, events)
    pair.run()
    assert [m.status if isinstance(m, Response) else m.method for m in pair.dropped] == ["INVITE", "INVITE", 486, "ACK"]
    assert responses_heard(pair.client) == [180, 486]
    assert len(tu_heard(pair.server, RequestReceived)) == 1
    assert tu_heard(pair.server, TransactionTimedOut) == [] == tu_heard(pair.client, TransactionTimedOut)
    assert pair.live() == 0


def test_pair_cancel_completes_when_the_first_cancel_and_its_200_are_lost() -> None:
    """§9: the UAC cancels while ringing; the lost CANCEL is retransmitted on E, the
    lost 200 re-sent for it; the UAS TU hears the CANCEL once and answers 487."""
    clock = Clock()
    pair = LossyPair(clock, drop_first_of(CANCEL=1, _200=1))
    pair.server.on_request = lambda event, now: [answer(event.request, 180)]
    pair.server.on_cancel = lambda event: [answer(event.transaction.request, 487)]
    invite_tx, events = pair.client.layer.send_request(make_request(branch=new_branch()), BOB, False, 0.0)
    assert isinstance(invite_tx, InviteClientTransaction)
    pair.handle(pair.client, events)
    pair.handle(pair.client, pair.client.layer.cancel(invite_tx, clock.seconds()))
    pair.run()
    assert [m.method if isinstance(m, Request) else m.status for m in pair.dropped] == ["CANCEL", 200]
    assert len(tu_heard(pair.server, CancelReceived)) == 1
    assert sorted(responses_heard(pair.client)) == [180, 200, 487]
    assert pair.live() == 0


def test_pair_accepted_invite_leaves_retransmission_of_the_2xx_to_the_tu() -> None:
    """RFC 6026: a lost 2xx is not re-sent by the server transaction (the UAS core does
    that, §13.3.1.4); the INVITE retransmission it provokes is absorbed in Accepted."""
    clock = Clock()
    pair = LossyPair(clock, drop_first_of(_200=1))
    pair.server.on_request = lambda event, now: [answer(event.request, 200)]
    invite_tx, events = pair.client.layer.send_request(make_request(branch=new_branch()), BOB, False, 0.0)
    pair.handle(pair.client, events)
    pair.run()
    assert len(tu_heard(pair.server, RequestReceived)) == 1
    assert responses_heard(pair.client) == []
    assert tu_heard(pair.client, TransactionTimedOut) == [TransactionTimedOut(invite_tx)]
    assert pair.live() == 0



def _earliest(layer: TransactionLayer) -> float | None:
    """The layer's next deadline the slow way: every live transaction asked."""
    return min((t for tx in layer._all() if (t := tx.get_timer()) is not None), default=None)


@given(st.lists(st.tuples(st.sampled_from(["invite", "options", "serve", "answer", "respond", "tick"]), st.integers(0, 7)), max_size=60))
@settings(max_examples=150, deadline=None)
def test_the_deadline_index_always_names_the_earliest_live_deadline(steps: list[tuple[str, int]]) -> None:
    """Whatever mix of transactions start, move their timers (earlier too) and end, the
    layer's indexed next deadline is the one a scan of every transaction would find."""
    layer = TransactionLayer()
    now = 0.0
    served: list[ServerTransaction] = []
    for number, (action, pick) in enumerate(steps):
        branch = f"z9hG4bKprop{number}"
        if action in ("invite", "options"):
            layer.send_request(make_request(action.upper(), branch), BOB, False, now)
        elif action == "serve":
            events = layer.receive(make_request("INVITE" if pick % 2 else "MESSAGE", branch), ALICE, False, now)
            served += [e.transaction for e in events if isinstance(e, RequestReceived)]
        elif action == "answer" and served:
            transaction = served[pick % len(served)]
            answered = transaction.last_response is not None and transaction.last_response.status >= 200
            if not transaction.terminated and not answered:
                layer.send_response(transaction, make_response(transaction.request, 180 if pick < 3 else 200), now)
        elif action == "respond" and layer._clients:
            client = list(layer._clients.values())[pick % len(layer._clients)]
            layer.receive(make_response(client.request, 100 + 100 * (pick % 3)), BOB, False, now)
        else:
            now += 0.2 * (pick + 1)
            layer.handle_timer(now)
        assert layer.get_timer() == _earliest(layer)
        assert not any(tx.terminated for tx in layer._all())  # ended ones are forgotten at once
    # Long after: only transactions that wait on their peer or TU without a timer are left.
    layer.handle_timer(now + 600)
    assert layer.get_timer() is None and all(tx.get_timer() is None for tx in layer._all())
