"""Self-tests of the real-peer runners: Kamailio as a registrar and proxy, baresip as phones.

They pin down what the gateway tests rely on: Kamailio answers OPTIONS,
baresip registers with digest credentials, dials, auto-answers, hangs up,
reports events, and records what it heard.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.baresip import Baresip
from tests.e2e.harness import options_status
from tests.e2e.kamailio import Kamailio
from tests.e2e.wav_tone import dominant_tone

pytestmark = pytest.mark.e2e

USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, loopback_only: None) -> Iterator[Kamailio]:
    with Kamailio(tmp_path_factory.mktemp("kamailio"), USERS) as proxy:
        yield proxy


def test_kamailio_answers_options(kamailio: Kamailio) -> None:
    """The readiness probe itself: OPTIONS to the proxy gets 200."""
    assert options_status(kamailio.port) == 200


def test_two_baresips_call_each_other_through_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    """Both register with digest, alice dials bob through the proxy (407 answered), bob answers
    on his own, each records the other's tone; alice's hang-up closes the call on bob's side."""
    alice = Baresip(tmp_path / "alice", "alice", kamailio.address, password=USERS["alice"], tone_hz=1000)
    bob = Baresip(tmp_path / "bob", "bob", kamailio.address, password=USERS["bob"], tone_hz=440)
    try:
        alice.start()
        bob.start()
        alice.dial(f"sip:bob@{kamailio.address}")
        assert bob.wait_event("CALL_ESTABLISHED")["peeruri"] == alice.aor
        alice.wait_event("CALL_ESTABLISHED")
        alice.wait_for_audio(seconds=1.5)
        bob.wait_for_audio(seconds=1.5)
        alice.hangup()
        bob.wait_event("CALL_CLOSED")
        alice.wait_event("CALL_CLOSED")
    finally:
        alice.stop()
        bob.stop()
    heard_by_alice = dominant_tone(alice.recordings("dec")[-1])
    heard_by_bob = dominant_tone(bob.recordings("dec")[-1])
    assert abs(heard_by_alice.hz - 440) < 5 and heard_by_alice.rms > 0.05, heard_by_alice
    assert abs(heard_by_bob.hz - 1000) < 5 and heard_by_bob.rms > 0.05, heard_by_bob
    assert "INVITE alice -> sip:bob" in kamailio.log_text()
