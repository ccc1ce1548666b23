"""Calls whose media goes through a real TURN server (Debian's coturn) on loopback.

The softphone page with ``?relay=1`` (iceTransportPolicy "relay") may only
use candidates on coturn, with the credentials /api/ice-servers made from
telebridge's ``[turn]`` section: so a call that connects proves coturn
accepted them and relayed the audio both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.coturn import Coturn
from tests.e2e.gateway_web import assert_calls_released, page_url
from tests.e2e.harness import Gateway
from tests.e2e.softphone import SoftphoneBrowser, SoftphonePage

pytestmark = pytest.mark.e2e

TURN_SECRET = "coturn-static-auth-secret-for-e2e"
TONE_HZ = 440
# The fake microphone's tone plays at half scale; what comes back through
# Opus and the relay is well above this, silence is 0.
SILENCE_RMS = 0.01


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory, loopback_only: None) -> Iterator[Coturn]:
    with Coturn(tmp_path_factory.mktemp("coturn"), secret=TURN_SECRET) as server:
        yield server


def _start_gateway(workdir: Path, coturn: Coturn, secret: str) -> Gateway:
    gateway = Gateway(workdir)
    gateway.write_config(f'\n[turn]\nurls = {json.dumps(coturn.urls)}\nsecret = "{secret}"\nttl = 600\n')
    gateway.start()
    return gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, coturn: Coturn) -> Iterator[Gateway]:
    """A gateway sharing coturn's static-auth-secret; its log must hold no traceback."""
    gw = _start_gateway(tmp_path_factory.mktemp("gateway"), coturn, TURN_SECRET)
    yield gw
    gw.stop()
    assert "Traceback" not in gw.log_text()


@pytest.fixture
def gateway_with_wrong_turn_secret(tmp_path: Path, coturn: Coturn) -> Iterator[Gateway]:
    """A gateway whose [turn] secret is not coturn's: every credential it hands out is refused."""
    gw = _start_gateway(tmp_path, coturn, "not-the-secret-coturn-knows")
    yield gw
    gw.stop()
    assert "Traceback" not in gw.log_text()


@pytest.fixture(scope="module")
def browser(loopback_only: None) -> Iterator[SoftphoneBrowser]:
    with SoftphoneBrowser(tone_hz=TONE_HZ) as b:
        yield b


def _offered_candidate_types(page: SoftphonePage) -> set[str]:
    invite = next(f["data"] for f in page.frames() if f["dir"] == "sent" and f["data"].startswith("INVITE "))
    return {line.split(" typ ")[1].split()[0] for line in invite.splitlines() if line.startswith("a=candidate:")}


def _uncaught(page: SoftphonePage) -> list[str]:
    return [e for e in page.errors() if e.startswith("uncaught")]


def test_relay_only_echo_call_goes_through_coturn(gateway: Gateway, coturn: Coturn, browser: SoftphoneBrowser) -> None:
    """?relay=1 with coturn credentials from /api/ice-servers: the echo call connects over a relay
    candidate (RFC 8656) and the caller hears its own tone; hanging up releases everything."""
    page = browser.open("alice-relay", page_url(gateway, "user=alice&dev=1&relay=1"))
    try:
        page.wait_state(registration="registered")
        page.call("echo")
        page.wait_state(call="connected", timeout=20)
        assert _offered_candidate_types(page) == {"relay"}
        heard = page.frequency(1.5)
        assert abs(heard["hz"] - TONE_HZ) <= 15 and heard["rms"] > SILENCE_RMS, heard
        pair = page.stats()["pair"]
        assert pair["localType"] == "relay" and pair["relayProtocol"] == "udp", pair
        page.hangup()
        page.wait_state(call="ended")
        assert page.last_error() == ""
        assert _uncaught(page) == []
    finally:
        page.close()
    assert_calls_released(gateway)
    assert coturn.process is not None and coturn.process.poll() is None, coturn.log_text()


def test_refused_turn_credentials_fail_the_call_with_a_reason(
    gateway_with_wrong_turn_secret: Gateway, browser: SoftphoneBrowser
) -> None:
    """coturn answers 401 to credentials made with another secret: the relay-only call ends at once,
    saying so, instead of sitting "connected" in silence; the gateway holds nothing for it."""
    gateway = gateway_with_wrong_turn_secret
    page = browser.open("bob-refused", page_url(gateway, "user=bob&dev=1&relay=1"))
    try:
        page.wait_state(registration="registered")
        page.call("echo")
        page.wait_state(call="ended", timeout=20)
        assert page.last_error() == "the TURN server refused the softphone's credentials"
        status = page.evaluate("document.getElementById('call-status').textContent")
        assert status == "Call failed: the TURN server refused the softphone's credentials"
        assert page.state()["registration"] == "registered"
        assert _uncaught(page) == []
    finally:
        page.close()
    assert_calls_released(gateway)


def test_losing_the_relay_mid_call_ends_the_call_with_a_reason(tmp_path: Path, browser: SoftphoneBrowser) -> None:
    """The only path is a relay and the relay dies mid-call: the page tries one ICE restart
    (which finds no path either), then ends the call with BYE and says why, instead of
    sitting "connected" in silence; the gateway holds nothing for it."""
    (tmp_path / "coturn").mkdir()
    with Coturn(tmp_path / "coturn", secret=TURN_SECRET) as doomed:
        (tmp_path / "gateway").mkdir()
        gateway = _start_gateway(tmp_path / "gateway", doomed, TURN_SECRET)
        try:
            page = browser.open("carol-relay-lost", page_url(gateway, "user=carol&dev=1&relay=1"))
            try:
                page.wait_state(registration="registered")
                page.call("echo")
                page.wait_state(call="connected", timeout=20)
                heard = page.frequency(1.0)
                assert abs(heard["hz"] - TONE_HZ) <= 15 and heard["rms"] > SILENCE_RMS, heard
                doomed.stop()
                # Chromium declares ICE failed about 30 s after the last response on the pair.
                page.wait_state(call="ended", timeout=75)
                assert page.last_error() == "the call's audio path was lost"
                assert _uncaught(page) == []
            finally:
                page.close()
            assert_calls_released(gateway)
        finally:
            gateway.stop()
        assert "Traceback" not in gateway.log_text()


# The page's own modules, in the page: relay-only media with no TURN server
# at all gathers nothing, and each TURN error code reads as what it means.
NO_CANDIDATES = """async () => {
  const { MediaSession, NoCandidates } = await import("/js/media.js");
  const { describeMediaError } = await import("/js/failures.js");
  const media = new MediaSession({ relayOnly: true });
  await media.open();
  let refused = null;
  try {
    await media.createOffer();
  } catch (error) {
    refused = error;
  } finally {
    media.close();
  }
  return {
    refused: refused && refused.name,
    withoutTurn: describeMediaError(refused),
    credentialsRefused: describeMediaError(new NoCandidates([401])),
    unreachable: describeMediaError(new NoCandidates([701])),
  };
}"""


def test_offer_without_candidates_is_refused_with_a_reason(gateway: Gateway, browser: SoftphoneBrowser) -> None:
    """An ICE-lite gateway never starts checks (RFC 8445 §2.5): an offer with no candidate is not sent,
    and the reason names the TURN server only when it answered 401 (RFC 8489 §14.8)."""
    page = browser.open("no-candidates", page_url(gateway))
    try:
        result = page.evaluate(NO_CANDIDATES)
        assert _uncaught(page) == []
    finally:
        page.close()
    assert result == {
        "refused": "NoCandidates",
        "withoutTurn": "the browser found no network path for the call's audio",
        "credentialsRefused": "the TURN server refused the softphone's credentials",
        "unreachable": "the browser found no network path for the call's audio",
    }
