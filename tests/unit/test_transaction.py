"""The four RFC 3261 §17 transaction state machines on a fake clock: every timer path.

Each test starts its transaction at a non-zero time so that deadlines are
checked relative to the start, as the machines compute them.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from telebridge.sip.message import Request, Response, make_response, parse_message
from telebridge.sip.transaction import (
    AckReceived,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    SendMessage,
    State,
    Timer,
    Transaction,
    TransactionTimedOut,
    TransactionUsageError,
    TransportFailed,
)

PEER = ("192.0.2.7", 5060)
START = 100.0


def make_request(method: str = "INVITE", *, extra: str = "") -> Request:
    raw = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtx1;rport\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        "Route: <sip:p2.example.com;lr>\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@example.com>;tag=caller\r\n'
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: tx-call-1\r\n"
        f"CSeq: 7 {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def answer(request: Request, status: int) -> Response:
    return make_response(request, status, to_tag="callee")


def sent(events: list[Event]) -> list[Request | Response]:
    return [e.message for e in events if isinstance(e, SendMessage)]


def statuses(events: list[Event]) -> list[int]:
    return [m.status for m in sent(events) if isinstance(m, Response)]


def started_clock() -> Clock:
    clock = Clock()
    clock.advance(START)
    return clock


def run_timers(tx: Transaction, clock: Clock, until: float) -> list[tuple[float, Event]]:
    """Advance ``clock`` deadline by deadline up to ``START + until``; log (offset, event)."""
    log: list[tuple[float, Event]] = []
    while (deadline := tx.get_timer()) is not None and deadline <= START + until:
        clock.advance(deadline - clock.seconds())
        log += [(clock.seconds() - START, event) for event in tx.handle_timer(clock.seconds())]
    return log


def send_times(log: list[tuple[float, Event]]) -> list[float]:
    return [offset for offset, event in log if isinstance(event, SendMessage)]


def timeout_times(log: list[tuple[float, Event]]) -> list[float]:
    return [offset for offset, event in log if isinstance(event, TransactionTimedOut)]


# --- INVITE client (§17.1.1) ---------------------------------------------------


def test_invite_client_start_sends_the_request_and_arms_timers_a_and_b() -> None:
    """RFC 3261 §17.1.1.2: Calling sends the INVITE, arms A at T1 and B at 64*T1."""
    clock = started_clock()
    invite = make_request()
    tx = InviteClientTransaction(invite, PEER)
    assert tx.start(clock.seconds()) == [SendMessage(invite, PEER)]
    assert tx.state is State.CALLING
    assert tx.get_timer() == START + 0.5
    assert tx.timers == {Timer.A: START + 0.5, Timer.B: START + 32.0}


def test_invite_client_timer_a_doubles_without_a_t2_cap() -> None:
    """RFC 3261 §17.1.1.2: A fires at T1, then doubles each time (INVITE has no T2 cap)."""
    clock = started_clock()
    invite = make_request()
    tx = InviteClientTransaction(invite, PEER)
    tx.start(clock.seconds())
    log = run_timers(tx, clock, until=31.9)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(event == SendMessage(invite, PEER) for _, event in log)
    assert tx.get_timer() == START + 32.0


def test_invite_client_timer_b_times_out_after_64_t1() -> None:
    """RFC 3261 §17.1.1.2: still Calling at 64*T1: B ends it and the TU is told (a 408)."""
    clock = started_clock()
    tx = InviteClientTransaction(make_request(), PEER)
    tx.start(clock.seconds())
    log = run_timers(tx, clock, until=100)
    assert timeout_times(log) == [32.0]
    assert log[-1] == (32.0, TransactionTimedOut(tx))
    assert tx.terminated and tx.state is State.TERMINATED and tx.get_timer() is None


def test_invite_client_timers_scale_with_the_t1_given() -> None:
    """RFC 3261 §17.1.1.1: T1 is an estimate of the RTT; A and B derive from it."""
    tx = InviteClientTransaction(make_request(), PEER, t1=0.25)
    tx.start(START)
    assert tx.timers == {Timer.A: START + 0.25, Timer.B: START + 16.0}


def test_invite_client_on_a_reliable_transport_has_no_timer_a() -> None:
    """RFC 3261 §17.1.1.2: A is for unreliable transports only; B still runs."""
    clock = started_clock()
    tx = InviteClientTransaction(make_request(), PEER, reliable=True)
    tx.start(clock.seconds())
    assert tx.timers == {Timer.B: START + 32.0}
    log = run_timers(tx, clock, until=100)
    assert [event for _, event in log] == [TransactionTimedOut(tx)]


def test_invite_client_provisional_stops_timers_a_and_b_and_reaches_the_tu() -> None:
    """RFC 3261 §17.1.1.2: a 1xx moves to Proceeding: no more retransmissions, no B."""
    tx = InviteClientTransaction(make_request(), PEER)
    tx.start(START)
    ringing = answer(tx.request, 180)
    assert tx.receive_response(ringing, START + 0.3) == [ResponseReceived(tx, ringing)]
    assert tx.state is State.PROCEEDING and tx.get_timer() is None
    progress = answer(tx.request, 183)
    assert tx.receive_response(progress, START + 1) == [ResponseReceived(tx, progress)]
    assert tx.handle_timer(START + 1000) == [] and not tx.terminated


def test_invite_client_acks_a_non_2xx_final_on_the_same_branch() -> None:
    """RFC 3261 §17.1.1.3: the ACK copies Request-URI, Call-ID, From, CSeq number,
    the top Via and Route from the INVITE, and To (with its tag) from the response."""
    invite = make_request()
    tx = InviteClientTransaction(invite, PEER)
    tx.start(START)
    busy = answer(invite, 486)
    events = tx.receive_response(busy, START + 1)
    [ack] = sent(events)
    assert events == [SendMessage(ack, PEER), ResponseReceived(tx, busy)]
    assert isinstance(ack, Request)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.headers.get_all("Via") == [invite.headers.get_all("Via")[0]]
    assert ack.branch == invite.branch
    assert ack.to_tag == "callee" and ack.headers.get("To") == busy.headers.get("To")
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.call_id == invite.call_id and ack.cseq == (7, "ACK")
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert isinstance(parse_message(ack.to_bytes()), Request)


def test_invite_client_timer_d_resends_the_ack_for_retransmitted_finals_for_32_s() -> None:
    """RFC 3261 §17.1.1.2: Completed re-sends the ACK for each retransmitted final
    response (not passed to the TU) until D, 32 s on an unreliable transport."""
    clock = started_clock()
    tx = InviteClientTransaction(make_request(), PEER)
    tx.start(clock.seconds())
    tx.receive_response(answer(tx.request, 180), START + 0.1)
    clock.advance(2)
    [ack] = sent(tx.receive_response(answer(tx.request, 486), clock.seconds()))
    assert tx.state is State.COMPLETED and tx.timers == {Timer.D: START + 34.0}
    assert tx.receive_response(answer(tx.request, 486), START + 3) == [SendMessage(ack, PEER)]
    assert tx.receive_response(answer(tx.request, 180), START + 4) == []
    log = run_timers(tx, clock, until=100)
    assert log == [] and tx.terminated and clock.seconds() == START + 34.0


def test_invite_client_timer_d_is_zero_on_a_reliable_transport() -> None:
    """RFC 3261 §17.1.1.2: D is 0 s for reliable transports: Completed ends at once."""
    tx = InviteClientTransaction(make_request(), PEER, reliable=True)
    tx.start(START)
    decline = answer(tx.request, 603)
    events = tx.receive_response(decline, START + 1)
    assert [type(e) for e in events] == [SendMessage, ResponseReceived]
    assert tx.terminated and tx.get_timer() is None


def test_invite_client_timer_d_value_is_a_parameter() -> None:
    """RFC 3261 §17.1.1.2: D is "at least 32 seconds"; a deployment may choose more."""
    tx = InviteClientTransaction(make_request(), PEER, timer_d=40.0)
    tx.start(START)
    tx.receive_response(answer(tx.request, 486), START + 1)
    assert tx.timers == {Timer.D: START + 41.0}


def test_invite_client_2xx_enters_accepted_and_passes_retransmissions_until_timer_m() -> None:
    """RFC 6026 §7.2: a 2xx moves to Accepted for M = 64*T1; every 2xx reaches the TU,
    which ACKs it itself (no ACK from the transaction)."""
    clock = started_clock()
    tx = InviteClientTransaction(make_request(), PEER)
    tx.start(clock.seconds())
    ok = answer(tx.request, 200)
    clock.advance(1)
    assert tx.receive_response(ok, clock.seconds()) == [ResponseReceived(tx, ok)]
    assert tx.state is State.ACCEPTED and tx.timers == {Timer.M: START + 33.0}
    again = answer(tx.request, 200)
    assert tx.receive_response(again, START + 2) == [ResponseReceived(tx, again)]
    assert tx.receive_response(answer(tx.request, 486), START + 3) == []
    assert run_timers(tx, clock, until=100) == []
    assert tx.terminated and clock.seconds() == START + 33.0


def test_invite_client_transport_error_ends_it_and_tells_the_tu() -> None:
    """RFC 3261 §17.1.4: a transport failure is reported to the TU and ends the transaction."""
    tx = InviteClientTransaction(make_request(), PEER)
    tx.start(START)
    assert tx.transport_error() == [TransportFailed(tx)]
    assert tx.terminated and tx.get_timer() is None
    assert tx.transport_error() == []


# --- non-INVITE client (§17.1.2) -----------------------------------------------


def test_non_invite_client_timer_e_doubles_up_to_t2() -> None:
    """RFC 3261 §17.1.2.2: E fires at T1, then doubles, capped at T2 (4 s)."""
    clock = started_clock()
    options = make_request("OPTIONS")
    tx = NonInviteClientTransaction(options, PEER)
    assert tx.start(clock.seconds()) == [SendMessage(options, PEER)]
    assert tx.state is State.TRYING
    assert tx.timers == {Timer.E: START + 0.5, Timer.F: START + 32.0}
    log = run_timers(tx, clock, until=31.9)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def test_non_invite_client_timer_f_times_out_after_64_t1() -> None:
    """RFC 3261 §17.1.2.2: F fires at 64*T1 in Trying or Proceeding and tells the TU."""
    clock = started_clock()
    tx = NonInviteClientTransaction(make_request("OPTIONS"), PEER)
    tx.start(clock.seconds())
    tx.receive_response(answer(tx.request, 100), START + 0.1)
    log = run_timers(tx, clock, until=100)
    assert timeout_times(log) == [32.0]
    assert tx.terminated and tx.get_timer() is None


def test_non_invite_client_timer_e_is_t2_once_proceeding() -> None:
    """RFC 3261 §17.1.2.2: in Proceeding, E is reset to T2 each time it fires."""
    clock = started_clock()
    tx = NonInviteClientTransaction(make_request("OPTIONS"), PEER)
    tx.start(clock.seconds())
    trying = answer(tx.request, 100)
    assert tx.receive_response(trying, START + 0.1) == [ResponseReceived(tx, trying)]
    assert tx.state is State.PROCEEDING
    log = run_timers(tx, clock, until=13)
    assert send_times(log) == [0.5, 4.5, 8.5, 12.5]


def test_non_invite_client_timer_k_absorbs_retransmissions_for_t4() -> None:
    """RFC 3261 §17.1.2.2: the final response goes to the TU once; Completed absorbs
    its retransmissions until K = T4."""
    clock = started_clock()
    tx = NonInviteClientTransaction(make_request("OPTIONS"), PEER)
    tx.start(clock.seconds())
    clock.advance(1)
    ok = answer(tx.request, 200)
    assert tx.receive_response(ok, clock.seconds()) == [ResponseReceived(tx, ok)]
    assert tx.state is State.COMPLETED and tx.timers == {Timer.K: START + 6.0}
    assert tx.receive_response(answer(tx.request, 200), START + 2) == []
    assert run_timers(tx, clock, until=100) == []
    assert tx.terminated and clock.seconds() == START + 6.0


def test_non_invite_client_timer_k_is_zero_on_a_reliable_transport() -> None:
    """RFC 3261 §17.1.2.2: K is 0 s for reliable transports."""
    tx = NonInviteClientTransaction(make_request("OPTIONS"), PEER, reliable=True)
    tx.start(START)
    assert tx.timers == {Timer.F: START + 32.0}
    tx.receive_response(answer(tx.request, 404), START + 1)
    assert tx.terminated and tx.get_timer() is None


def test_non_invite_client_on_a_reliable_transport_still_times_out_on_f() -> None:
    """RFC 3261 §17.1.2.2: E is for unreliable transports only; F still runs."""
    clock = started_clock()
    tx = NonInviteClientTransaction(make_request("OPTIONS"), PEER, reliable=True)
    tx.start(clock.seconds())
    log = run_timers(tx, clock, until=100)
    assert log == [(32.0, TransactionTimedOut(tx))]


# --- INVITE server (§17.2.1) ---------------------------------------------------


def test_invite_server_sends_100_trying_after_200_ms_of_tu_silence() -> None:
    """RFC 3261 §17.2.1: the transaction sends 100 Trying itself if the TU has not
    responded within 200 ms; it copies the Timestamp (§8.2.6.1) and has no To tag."""
    invite = make_request(extra="Timestamp: 54\r\n")
    tx = InviteServerTransaction(invite, PEER, START)
    assert tx.state is State.PROCEEDING
    assert tx.get_timer() == START + 0.2
    assert tx.receive_request(START + 0.1) == []
    [trying] = sent(tx.handle_timer(START + 0.2))
    assert isinstance(trying, Response) and trying.status == 100
    assert trying.headers.get_all("Via") == invite.headers.get_all("Via")
    assert trying.to_tag is None and trying.cseq == (7, "INVITE")
    assert trying.headers.get("Timestamp") == "54"
    assert tx.get_timer() is None and tx.state is State.PROCEEDING
    assert tx.receive_request(START + 0.5) == [SendMessage(trying, PEER)]


def test_invite_server_sends_no_100_when_the_tu_answers_within_200_ms() -> None:
    """RFC 3261 §17.2.1: a TU response within 200 ms makes the automatic 100 unnecessary."""
    tx = InviteServerTransaction(make_request(), PEER, START)
    ringing = answer(tx.request, 180)
    assert tx.send_response(ringing, START + 0.1) == [SendMessage(ringing, PEER)]
    assert tx.get_timer() is None
    assert tx.handle_timer(START + 0.2) == []


def test_invite_server_retransmitted_invite_gets_the_last_provisional() -> None:
    """RFC 3261 §17.2.1: in Proceeding a retransmission gets the most recent provisional."""
    tx = InviteServerTransaction(make_request(), PEER, START)
    tx.send_response(answer(tx.request, 180), START + 0.1)
    progress = answer(tx.request, 183)
    tx.send_response(progress, START + 0.2)
    assert tx.receive_request(START + 0.5) == [SendMessage(progress, PEER)]


def test_invite_server_timer_g_doubles_up_to_t2_until_the_ack() -> None:
    """RFC 3261 §17.2.1: G re-sends the 300-699 final at T1, 2*T1, ... capped at T2;
    the ACK stops it (Confirmed), then I = T4 absorbs ACK retransmissions."""
    clock = started_clock()
    tx = InviteServerTransaction(make_request(), PEER, clock.seconds())
    busy = answer(tx.request, 486)
    assert tx.send_response(busy, clock.seconds()) == [SendMessage(busy, PEER)]
    assert tx.state is State.COMPLETED
    assert tx.timers == {Timer.G: START + 0.5, Timer.H: START + 32.0}
    log = run_timers(tx, clock, until=12)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(event == SendMessage(busy, PEER) for _, event in log)
    ack = make_request("ACK")
    assert tx.receive_ack(ack, START + 12) == []
    assert tx.state is State.CONFIRMED and tx.timers == {Timer.I: START + 17.0}
    assert tx.receive_ack(ack, START + 13) == []
    assert tx.receive_request(START + 13) == []
    clock.advance(1)
    assert run_timers(tx, clock, until=100) == []
    assert tx.terminated and clock.seconds() == START + 17.0


def test_invite_server_retransmitted_invite_in_completed_gets_the_final_again() -> None:
    """RFC 3261 §17.2.1: a request retransmission in Completed re-sends the final."""
    tx = InviteServerTransaction(make_request(), PEER, START)
    busy = answer(tx.request, 486)
    tx.send_response(busy, START)
    assert tx.receive_request(START + 0.2) == [SendMessage(busy, PEER)]


def test_invite_server_timer_h_times_out_after_64_t1_without_an_ack() -> None:
    """RFC 3261 §17.2.1: no ACK by H = 64*T1: the transaction ends and the TU is told."""
    clock = started_clock()
    tx = InviteServerTransaction(make_request(), PEER, clock.seconds())
    tx.send_response(answer(tx.request, 480), clock.seconds())
    log = run_timers(tx, clock, until=100)
    assert timeout_times(log) == [32.0]
    assert send_times(log)[-1] == 31.5
    assert tx.terminated and tx.get_timer() is None


def test_invite_server_on_a_reliable_transport_has_no_timer_g_and_timer_i_is_zero() -> None:
    """RFC 3261 §17.2.1: G is for unreliable transports only, I is 0 s on reliable ones."""
    tx = InviteServerTransaction(make_request(), PEER, START, reliable=True)
    tx.send_response(answer(tx.request, 486), START)
    assert tx.timers == {Timer.H: START + 32.0}
    tx.receive_ack(make_request("ACK"), START + 1)
    assert tx.terminated and tx.get_timer() is None


def test_invite_server_2xx_enters_accepted_until_timer_l() -> None:
    """RFC 6026 §7.1: after a 2xx, INVITE retransmissions are absorbed, the TU's own
    2xx retransmissions pass, ACKs go to the TU, and L = 64*T1 ends it."""
    clock = started_clock()
    tx = InviteServerTransaction(make_request(), PEER, clock.seconds())
    ok = answer(tx.request, 200)
    assert tx.send_response(ok, clock.seconds()) == [SendMessage(ok, PEER)]
    assert tx.state is State.ACCEPTED and tx.timers == {Timer.L: START + 32.0}
    assert tx.receive_request(START + 0.5) == []
    assert tx.send_response(ok, START + 0.5) == [SendMessage(ok, PEER)]
    ack = make_request("ACK")
    assert tx.receive_ack(ack, START + 0.6) == [AckReceived(ack, PEER, tx)]
    assert run_timers(tx, clock, until=100) == []
    assert tx.terminated and clock.seconds() == START + 32.0


def test_invite_server_ack_before_any_final_is_absorbed() -> None:
    """RFC 3261 §17.2.1: only Completed and Accepted expect an ACK; a stray one is dropped."""
    tx = InviteServerTransaction(make_request(), PEER, START)
    assert tx.receive_ack(make_request("ACK"), START + 0.1) == []
    assert tx.state is State.PROCEEDING


def test_invite_server_refuses_a_response_after_its_final() -> None:
    """RFC 3261 §17.2.1: Completed takes no new response from the TU; Accepted only 2xx."""
    rejected = InviteServerTransaction(make_request(), PEER, START)
    rejected.send_response(answer(rejected.request, 487), START)
    with pytest.raises(TransactionUsageError, match="Completed"):
        rejected.send_response(answer(rejected.request, 200), START + 1)
    accepted = InviteServerTransaction(make_request(), PEER, START)
    accepted.send_response(answer(accepted.request, 200), START)
    with pytest.raises(TransactionUsageError, match="Accepted"):
        accepted.send_response(answer(accepted.request, 486), START + 1)


def test_invite_server_transport_error_ends_it_and_tells_the_tu() -> None:
    """RFC 3261 §17.2.4: a transport failure is reported to the TU."""
    tx = InviteServerTransaction(make_request(), PEER, START)
    tx.send_response(answer(tx.request, 486), START)
    assert tx.transport_error() == [TransportFailed(tx)]
    assert tx.terminated and tx.get_timer() is None


# --- non-INVITE server (§17.2.2) -----------------------------------------------


def test_non_invite_server_absorbs_retransmissions_while_trying() -> None:
    """RFC 3261 §17.2.2: Trying discards request retransmissions; no automatic 100."""
    tx = NonInviteServerTransaction(make_request("OPTIONS"), PEER, START)
    assert tx.state is State.TRYING and tx.get_timer() is None
    assert tx.receive_request(START + 0.5) == []


def test_non_invite_server_resends_the_last_response_on_a_retransmission() -> None:
    """RFC 3261 §17.2.2: Proceeding re-sends the last provisional, Completed the final."""
    tx = NonInviteServerTransaction(make_request("REGISTER"), PEER, START)
    trying = answer(tx.request, 100)
    tx.send_response(trying, START + 0.1)
    assert tx.state is State.PROCEEDING
    assert tx.receive_request(START + 0.5) == [SendMessage(trying, PEER)]
    unauthorized = answer(tx.request, 401)
    assert tx.send_response(unauthorized, START + 0.6) == [SendMessage(unauthorized, PEER)]
    assert tx.state is State.COMPLETED
    assert tx.receive_request(START + 1.5) == [SendMessage(unauthorized, PEER)]


def test_non_invite_server_timer_j_keeps_the_final_for_64_t1() -> None:
    """RFC 3261 §17.2.2: J = 64*T1 on unreliable transports, then Terminated."""
    clock = started_clock()
    tx = NonInviteServerTransaction(make_request("OPTIONS"), PEER, clock.seconds())
    clock.advance(0.2)
    tx.send_response(answer(tx.request, 200), clock.seconds())
    assert tx.timers == {Timer.J: START + 0.2 + 32.0}
    assert run_timers(tx, clock, until=100) == []
    assert tx.terminated


def test_non_invite_server_timer_j_is_zero_on_a_reliable_transport() -> None:
    """RFC 3261 §17.2.2: J is 0 s for reliable transports; the response still goes out."""
    tx = NonInviteServerTransaction(make_request("OPTIONS"), PEER, START, reliable=True)
    ok = answer(tx.request, 200)
    assert tx.send_response(ok, START + 0.2) == [SendMessage(ok, PEER)]
    assert tx.terminated and tx.get_timer() is None


def test_non_invite_server_refuses_a_second_final() -> None:
    """RFC 3261 §17.2.2: once Completed, the TU's further responses are refused."""
    tx = NonInviteServerTransaction(make_request("OPTIONS"), PEER, START)
    tx.send_response(answer(tx.request, 200), START)
    with pytest.raises(TransactionUsageError):
        tx.send_response(answer(tx.request, 500), START + 1)
