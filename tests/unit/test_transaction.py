"""RFC 3261 §17 transactions on a fake clock: every timer path."""

from __future__ import annotations

from twisted.internet.task import Clock

from telebridge.sip.message import Request, Response, make_response, parse_message
from telebridge.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    SendMessage,
    ServerTransaction,
    State,
    TransactionTimedOut,
)
from telebridge.sip.transaction_layer import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    StrayResponse,
    TransactionLayer,
    new_branch,
)

PEER = ("127.0.0.1", 5070)


def request(method: str = "INVITE", branch: str = "z9hG4bKtest1", cseq: int = 1) -> Request:
    raw = (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        "Route: <sip:proxy.example;lr>\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        "To: <sip:bob@127.0.0.1>\r\n"
        "Call-ID: call-1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def response(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag="b1" if status > 100 else None)


def sends(events: list[object]) -> list[SendMessage]:
    return [e for e in events if isinstance(e, SendMessage)]


def run_timers(tx: ClientTransaction | ServerTransaction, clock: Clock, until: float) -> list[tuple[float, object]]:
    """Advance the clock deadline by deadline up to ``until``; log what fired."""
    log: list[tuple[float, object]] = []
    while (deadline := tx.get_timer()) is not None and deadline <= until:
        clock.advance(deadline - clock.seconds())
        for event in tx.handle_timer(clock.seconds()):
            log.append((clock.seconds(), event))
    return log


def test_invite_client_timer_a_doubles_and_timer_b_times_out_after_64_t1() -> None:
    """§17.1.1.2: A fires at T1, 2T1, 4T1...; B ends the transaction at 64*T1."""
    clock = Clock()
    tx = ClientTransaction(request(), PEER, reliable=False, now=clock.seconds())
    assert len(sends(tx.start())) == 1
    assert tx.get_timer() == 0.5
    log = run_timers(tx, clock, until=100)
    resend_times = [t for t, e in log if isinstance(e, SendMessage)]
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [t for t, e in log if isinstance(e, TransactionTimedOut)] == [32.0]
    assert tx.terminated and tx.get_timer() is None


def test_invite_client_on_reliable_transport_never_retransmits() -> None:
    """§17.1.1.2: timer A is not used on a reliable transport; B still is."""
    clock = Clock()
    tx = ClientTransaction(request(), PEER, reliable=True, now=0)
    log = run_timers(tx, clock, until=100)
    assert [type(e) for _, e in log] == [TransactionTimedOut]


def test_invite_client_provisional_stops_a_and_b() -> None:
    """§17.1.1.2: in Proceeding neither A nor B runs; the TU sees the 180."""
    tx = ClientTransaction(request(), PEER, reliable=False, now=0)
    events = tx.receive_response(response(tx.request, 180), 0.2)
    assert [type(e) for e in events] == [ResponseReceived]
    assert tx.state is State.PROCEEDING and tx.get_timer() is None


def test_invite_client_acks_non_2xx_and_timer_d_absorbs_retransmissions() -> None:
    """§17.1.1.3: the ACK reuses the branch and takes To from the response; D is 32 s."""
    clock = Clock()
    tx = ClientTransaction(request(), PEER, reliable=False, now=0)
    busy = response(tx.request, 486)
    events = tx.receive_response(busy, 1.0)
    [ack] = sends(events)
    assert ack.message.method == "ACK"  # type: ignore[union-attr]
    assert ack.message.branch == tx.request.branch
    assert ack.message.to_tag == "b1"
    assert ack.message.cseq == (1, "ACK")
    assert ack.message.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    assert tx.state is State.COMPLETED and tx.get_timer() == 33.0
    again = tx.receive_response(busy, 2.0)
    assert [e.message.method for e in sends(again)] == ["ACK"]  # type: ignore[union-attr]
    assert not [e for e in again if isinstance(e, ResponseReceived)]
    clock.advance(1.0)
    run_timers(tx, clock, until=40)
    assert tx.terminated


def test_invite_client_timer_d_is_zero_on_reliable_transport() -> None:
    """§17.1.1.2: D is 0 for reliable transports."""
    tx = ClientTransaction(request(), PEER, reliable=True, now=0)
    tx.receive_response(response(tx.request, 603), 1.0)
    assert tx.get_timer() == 1.0


def test_invite_client_2xx_enters_accepted_and_passes_retransmissions_for_64_t1() -> None:
    """RFC 6026 §7.2: 2xx retransmissions still reach the TU until timer M."""
    tx = ClientTransaction(request(), PEER, reliable=False, now=0)
    ok = response(tx.request, 200)
    assert [type(e) for e in tx.receive_response(ok, 1.0)] == [ResponseReceived]
    assert tx.state is State.ACCEPTED and tx.get_timer() == 33.0
    assert [type(e) for e in tx.receive_response(ok, 2.0)] == [ResponseReceived]
    tx.handle_timer(33.0)
    assert tx.terminated


def test_non_invite_client_timer_e_caps_at_t2_and_f_times_out() -> None:
    """§17.1.2.2: E doubles up to T2; F fires at 64*T1."""
    clock = Clock()
    tx = ClientTransaction(request("OPTIONS"), PEER, reliable=False, now=0)
    log = run_timers(tx, clock, until=100)
    resend_times = [t for t, e in log if isinstance(e, SendMessage)]
    assert resend_times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    gaps = [b - a for a, b in zip(resend_times, resend_times[1:])]
    assert max(gaps) == 4.0
    assert [t for t, e in log if isinstance(e, TransactionTimedOut)] == [32.0]


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    """§17.1.2.2: after a provisional, E fires every T2."""
    clock = Clock()
    tx = ClientTransaction(request("OPTIONS"), PEER, reliable=False, now=0)
    tx.receive_response(response(tx.request, 100), 0.1)
    clock.advance(0.1)
    log = run_timers(tx, clock, until=10)
    times = [t for t, e in log if isinstance(e, SendMessage)]
    assert times[0] == 0.5
    assert [b - a for a, b in zip(times, times[1:])] == [4.0, 4.0]


def test_non_invite_client_final_response_then_timer_k() -> None:
    """§17.1.2.2: K is T4 on UDP, then the transaction ends."""
    tx = ClientTransaction(request("OPTIONS"), PEER, reliable=False, now=0)
    events = tx.receive_response(response(tx.request, 200), 1.0)
    assert [type(e) for e in events] == [ResponseReceived]
    assert tx.state is State.COMPLETED and tx.get_timer() == 6.0
    assert tx.receive_response(response(tx.request, 200), 2.0) == []
    tx.handle_timer(6.0)
    assert tx.terminated


def test_invite_server_sends_100_trying_after_200_ms_of_silence() -> None:
    """§17.2.1: the server transaction sends 100 if the TU has not answered in 200 ms."""
    tx = ServerTransaction(request(), PEER, reliable=False, now=0)
    assert tx.get_timer() == 0.2
    [trying] = sends(tx.handle_timer(0.2))
    assert trying.message.status == 100  # type: ignore[union-attr]
    assert [e.message.status for e in sends(tx.receive_request(0.3))] == [100]  # type: ignore[union-attr]


def test_invite_server_no_100_when_tu_answers_quickly() -> None:
    """§17.2.1: a provisional from the TU within 200 ms replaces the automatic 100."""
    tx = ServerTransaction(request(), PEER, reliable=False, now=0)
    tx.send_response(response(tx.request, 180), 0.1)
    assert tx.get_timer() is None


def test_invite_server_timer_g_retransmits_until_ack_then_timer_i() -> None:
    """§17.2.1: G retransmits the final response (capped at T2); ACK stops it; I is T4."""
    clock = Clock()
    tx = ServerTransaction(request(), PEER, reliable=False, now=0)
    tx.send_response(response(tx.request, 486), 0.0)
    log = run_timers(tx, clock, until=8)
    times = [t for t, e in log if isinstance(e, SendMessage)]
    assert times == [0.5, 1.5, 3.5, 7.5]
    tx.receive_ack(8.0)
    assert tx.state is State.CONFIRMED and tx.get_timer() == 13.0
    tx.handle_timer(13.0)
    assert tx.terminated


def test_invite_server_timer_h_gives_up_without_ack() -> None:
    """§17.2.1: no ACK within 64*T1: H ends the transaction and tells the TU."""
    clock = Clock()
    tx = ServerTransaction(request(), PEER, reliable=False, now=0)
    tx.send_response(response(tx.request, 486), 0.0)
    log = run_timers(tx, clock, until=100)
    assert [t for t, e in log if isinstance(e, TransactionTimedOut)] == [32.0]
    assert tx.terminated


def test_invite_server_reliable_has_no_g_and_zero_i() -> None:
    """§17.2.1: G is not used and I is 0 on reliable transports."""
    tx = ServerTransaction(request(), PEER, reliable=True, now=0)
    tx.send_response(response(tx.request, 486), 0.0)
    assert set(tx.timers) == {"H"}
    tx.receive_ack(1.0)
    assert tx.get_timer() == 1.0


def test_invite_server_2xx_enters_accepted_until_timer_l() -> None:
    """RFC 6026 §7.1: after a 2xx, INVITE retransmissions are absorbed until L."""
    tx = ServerTransaction(request(), PEER, reliable=False, now=0)
    tx.send_response(response(tx.request, 200), 0.0)
    assert tx.state is State.ACCEPTED and tx.get_timer() == 32.0
    assert tx.receive_request(1.0) == []
    tx.handle_timer(32.0)
    assert tx.terminated


def test_non_invite_server_resends_final_on_retransmission_and_timer_j() -> None:
    """§17.2.2: a retransmitted request gets the final again; J is 64*T1 on UDP."""
    tx = ServerTransaction(request("OPTIONS"), PEER, reliable=False, now=0)
    assert tx.receive_request(0.1) == []
    tx.send_response(response(tx.request, 200), 0.2)
    assert [e.message.status for e in sends(tx.receive_request(1.0))] == [200]  # type: ignore[union-attr]
    assert tx.get_timer() == 32.2
    tx.handle_timer(32.2)
    assert tx.terminated


def test_non_invite_server_timer_j_is_zero_on_reliable() -> None:
    """§17.2.2: J is 0 for reliable transports."""
    tx = ServerTransaction(request("OPTIONS"), PEER, reliable=True, now=0)
    tx.send_response(response(tx.request, 200), 0.2)
    assert tx.get_timer() == 0.2


# --- the transaction layer: matching and bookkeeping ---------------------------


def test_layer_matches_retransmission_to_its_server_transaction() -> None:
    """§17.2.3: same branch, sent-by and method: the same transaction."""
    layer = TransactionLayer()
    [event] = layer.receive(request("OPTIONS"), PEER, False, 0)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.transaction, response(event.request, 200), 0.1)
    again = layer.receive(request("OPTIONS"), PEER, False, 0.5)
    assert [e.message.status for e in sends(again)] == [200]  # type: ignore[union-attr]
    assert len(layer) == 1
    layer.handle_timer(100)
    assert len(layer) == 0


def test_layer_cancel_gets_200_and_reaches_the_tu() -> None:
    """§9.2: CANCEL of a pending INVITE is answered 200 and the TU is told."""
    layer = TransactionLayer()
    [invite_event] = layer.receive(request("INVITE"), PEER, False, 0)
    events = layer.receive(request("CANCEL"), PEER, False, 0.1)
    statuses = [e.message.status for e in sends(events)]  # type: ignore[union-attr]
    assert statuses == [200]
    [cancelled] = [e for e in events if isinstance(e, CancelReceived)]
    assert cancelled.transaction is invite_event.transaction  # type: ignore[union-attr]


def test_layer_cancel_for_unknown_invite_gets_481() -> None:
    """§9.2: a CANCEL that matches no INVITE transaction gets 481."""
    layer = TransactionLayer()
    events = layer.receive(request("CANCEL"), PEER, False, 0)
    assert [e.message.status for e in sends(events)] == [481]  # type: ignore[union-attr]


def test_layer_ack_for_non_2xx_is_absorbed_and_ack_for_2xx_goes_to_tu() -> None:
    """§17.2.3 / §13.3.1.4: the ACK of a non-2xx belongs to the transaction."""
    layer = TransactionLayer()
    [ev] = layer.receive(request("INVITE"), PEER, False, 0)
    layer.send_response(ev.transaction, response(ev.request, 486), 0.1)  # type: ignore[union-attr]
    assert layer.receive(request("ACK"), PEER, False, 0.2) == []
    other = layer.receive(request("ACK", branch="z9hG4bKnew"), PEER, False, 0.3)
    assert [type(e) for e in other] == [AckReceived]


def test_layer_response_for_no_transaction_is_stray() -> None:
    """§17.1.3: a response matching no client transaction goes to the TU."""
    layer = TransactionLayer()
    events = layer.receive(response(request("INVITE"), 200), PEER, False, 0)
    assert [type(e) for e in events] == [StrayResponse]


def test_layer_cancel_waits_for_a_provisional() -> None:
    """§9.1: CANCEL is not sent before the INVITE got a provisional response."""
    layer = TransactionLayer()
    invite, _ = layer.send_request(request("INVITE"), PEER, False, 0)
    assert layer.cancel(invite, 0.1) == []
    events = layer.receive(response(invite.request, 180), PEER, False, 0.2)
    [cancel] = [e for e in sends(events)]
    assert cancel.message.method == "CANCEL"  # type: ignore[union-attr]
    assert cancel.message.branch == invite.request.branch
    assert cancel.message.cseq == (1, "CANCEL")


def test_pair_of_layers_completes_over_a_lossy_link() -> None:
    """A client and a server joined by a link that drops the first three messages."""
    clock = Clock()
    client, server = TransactionLayer(), TransactionLayer()
    dropped = 0
    delivered_to_tu: list[object] = []

    def carry(events: list[object], to_server: bool) -> None:
        nonlocal dropped
        for event in events:
            if isinstance(event, SendMessage):
                if dropped < 3:
                    dropped += 1
                    continue
                target = server if to_server else client
                replies = target.receive(event.message, PEER, False, clock.seconds())
                for reply in replies:
                    if isinstance(reply, RequestReceived):
                        carry(server.send_response(reply.transaction, response(reply.request, 200), clock.seconds()), False)
                    else:
                        delivered_to_tu.append(reply)
                carry([r for r in replies if isinstance(r, SendMessage)], not to_server)

    tx, events = client.send_request(request("OPTIONS", branch=new_branch()), PEER, False, 0)
    carry(events, True)
    while not any(isinstance(e, ResponseReceived) for e in delivered_to_tu):
        deadline = min(t for t in (client.get_timer(), server.get_timer()) if t is not None)
        clock.advance(deadline - clock.seconds())
        carry(client.handle_timer(clock.seconds()), True)
        carry(server.handle_timer(clock.seconds()), False)
        assert clock.seconds() < 32
    clock.advance(100)
    client.handle_timer(clock.seconds())
    server.handle_timer(clock.seconds())
    assert len(client) == 0 and len(server) == 0
