"""Which calls are recorded: listed users, or the SIP side's header."""

from __future__ import annotations

from pathlib import Path

from telebridge.calls.recording_policy import RecordingPolicy
from telebridge.sip.message import Headers, Response


def _answer(**headers: str) -> Response:
    response = Response(headers=Headers(), status=200, reason="OK")
    for name, value in headers.items():
        response.headers.add(name.replace("_", "-"), value)
    return response


def test_a_listed_user_is_recorded_either_way_round() -> None:
    policy = RecordingPolicy(Path("/r"), frozenset({"alice"}))
    assert policy.wanted("alice", "bob", []) and policy.wanted("bob", "alice", [])
    assert not policy.wanted("carol", "bob", [])


def test_a_star_records_everyone() -> None:
    assert RecordingPolicy(Path("/r"), frozenset({"*"})).wanted("x", "y", [])


def test_the_sip_side_asks_per_call_with_a_true_header_value() -> None:
    policy = RecordingPolicy(Path("/r"))
    assert policy.wanted("a", "b", [_answer(X_Record="on")])
    assert policy.wanted("a", "b", [_answer(X_Record=" Yes ")])
    assert not policy.wanted("a", "b", [_answer(X_Record="off")])
    assert not policy.wanted("a", "b", [_answer(X_Other="on")])
    assert RecordingPolicy(Path("/r"), header="P-Rec").wanted("a", "b", [_answer(P_Rec="1")])
