"""JsSIP 3.13, the SIP stack most WebRTC apps embed, against a real gateway in headless Chromium.

The app side is tests/e2e/jssip/client.js: JsSIP configured with the
gateway's WebSocket URL (``?token=JWT``) and the user's URI, nothing else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.gateway_web import assert_calls_released, token, websocket_url
from tests.e2e.harness import LOOPBACK, PHONE_PASSWORD, PHONE_USER, Gateway, free_port, run_sipp, start_sipp
from tests.e2e.jssip_page import bundle_jssip, open_jssip_page
from tests.e2e.rtp_events import RtpEvents
from tests.e2e.softphone import SoftphoneBrowser, SoftphonePage

pytestmark = pytest.mark.e2e

TONE_HZ = 523
# The fake microphone's tone is at half scale; silence is 0.
SILENCE_RMS = 0.01


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, loopback_only: None) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("gateway")).running() as gw:
        yield gw


@pytest.fixture(scope="module")
def jssip_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JsSIP as one browser script, made once per run (outside the tree, so parallel runs cannot collide)."""
    return bundle_jssip(tmp_path_factory.mktemp("jssip"))


@pytest.fixture(scope="module")
def browser(loopback_only: None) -> Iterator[SoftphoneBrowser]:
    # 523 Hz: a whole number of cycles in the one-second loop, so no click.
    with SoftphoneBrowser(tone_hz=TONE_HZ) as b:
        yield b


def _messages(page: SoftphonePage, direction: str, start: str) -> list[str]:
    return [f["data"] for f in page.frames() if f["dir"] == direction and f["data"].startswith(start)]


def _uncaught(page: SoftphonePage) -> list[str]:
    return [e for e in page.errors() if e.startswith("uncaught")]


def test_jssip_registers_and_hears_its_tone_from_echo(
    gateway: Gateway, jssip_bundle: Path, browser: SoftphoneBrowser
) -> None:
    """JsSIP with only the token URL and sip:alice@127.0.0.1: REGISTER gets 200, the echo call
    is confirmed, the remote track carries our own tone, and BYE leaves nothing behind."""
    page = open_jssip_page(browser, gateway, jssip_bundle, "jssip-alice")
    try:
        page.evaluate("(config) => window.jssipClient.start(config)", {
            "wsUrl": websocket_url(gateway, "alice"), "uri": f"sip:alice@{LOOPBACK}",
        })
        page.wait_for("window.jssipClient.state.registration !== 'registering'")
        state = page.evaluate("window.jssipClient.state")
        assert state["registerStatus"] == 200, state
        page.evaluate("(target) => window.jssipClient.call(target)", f"sip:echo@{LOOPBACK}")
        page.wait_for("window.jssipClient.state.call !== 'calling'", timeout=20)
        state = page.evaluate("window.jssipClient.state")
        assert state["call"] == "connected", state
        heard = page.frequency(1.5, stream="jssipClient.remoteStream")
        assert abs(heard["hz"] - TONE_HZ) <= 15 and heard["rms"] > SILENCE_RMS, heard
        page.evaluate("() => window.jssipClient.hangup()")
        page.wait_for("window.jssipClient.state.call === 'ended'")
        assert _uncaught(page) == []
        page.evaluate("() => window.jssipClient.stop()")
    finally:
        page.close()
    assert_calls_released(gateway)


def test_jssip_authorization_jwt_register_gets_200(
    gateway: Gateway, jssip_bundle: Path, browser: SoftphoneBrowser
) -> None:
    """JsSIP's authorization_jwt puts ``Authorization: Bearer <JWT>`` on REGISTER (RFC 8898 §2.2):
    the gateway's registrar accepts it with 200."""
    jwt = token("bob")
    page = open_jssip_page(browser, gateway, jssip_bundle, "jssip-bob")
    try:
        page.evaluate("(config) => window.jssipClient.start(config)", {
            "wsUrl": websocket_url(gateway, "bob"), "uri": f"sip:bob@{LOOPBACK}", "authorizationJwt": f"Bearer {jwt}",
        })
        page.wait_for("window.jssipClient.state.registration !== 'registering'")
        (register,) = _messages(page, "sent", "REGISTER ")
        assert re.search(rf"^Authorization: Bearer {re.escape(jwt)}\r?$", register, re.MULTILINE), register
        state = page.evaluate("window.jssipClient.state")
        assert state["registerStatus"] == 200, state
        page.evaluate("() => window.jssipClient.stop()")
    finally:
        page.close()


def test_jssip_info_dtmf_reaches_a_sip_phone_as_rfc4733_events(
    gateway: Gateway, jssip_bundle: Path, browser: SoftphoneBrowser, tmp_path: Path
) -> None:
    """Issue 5 acceptance: JsSIP's sendDTMF with its default transport (SIP INFO) calls a
    SIPp phone that negotiated telephone-event: the digits 159#*0 arrive as RFC 4733
    events, in order, each exactly once."""
    phone_port = free_port()
    registered = run_sipp(gateway, "phone_register.xml", "udp", tmp_path, [
        "-s", PHONE_USER, "-au", PHONE_USER, "-ap", PHONE_PASSWORD, "-key", "contact_port", str(phone_port),
    ])
    assert registered.returncode == 0, registered.stdout + registered.stderr
    events = RtpEvents()
    phone = start_sipp(gateway, "phone_answers_dtmf.xml", tmp_path, [
        "-p", str(phone_port), "-key", "rtp_port", str(events.port), "-timeout", "40s",
    ])
    page = open_jssip_page(browser, gateway, jssip_bundle, "jssip-dtmf")
    try:
        page.evaluate("(config) => window.jssipClient.start(config)", {
            "wsUrl": websocket_url(gateway, "carol"), "uri": f"sip:carol@{LOOPBACK}",
        })
        page.evaluate("(target) => window.jssipClient.call(target)", f"sip:{PHONE_USER}@{LOOPBACK}")
        page.wait_for("window.jssipClient.state.call !== 'calling'", timeout=20)
        assert page.evaluate("window.jssipClient.state")["call"] == "connected"
        page.evaluate("(tones) => window.jssipClient.sendDtmf(tones)", "159#*0")
        deadline = time.monotonic() + 15
        while len(events.digits()) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_messages(page, "sent", "INFO ")) == 6
        assert events.digits() == "159#*0", events.ends
        assert events.other_packets > 0  # the voice flowed too
        page.evaluate("() => window.jssipClient.hangup()")
        output, _ = phone.communicate(timeout=15)
        assert phone.returncode == 0, output
    finally:
        page.close()
        events.close()
        if phone.poll() is None:
            phone.kill()
    assert_calls_released(gateway)
