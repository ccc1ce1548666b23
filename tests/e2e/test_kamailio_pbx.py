"""PBX mode against a real PBX: Kamailio as registrar and proxy with digest auth.

baresip (1000 Hz) is registered to Kamailio as bob; telebridge runs with
``[upstream]`` pointing at Kamailio and alice's PBX password in
``[accounts.alice]``; the softphone page in headless Chromium (440 Hz) signs
in as alice with a token only. Kamailio challenges telebridge's REGISTER
(401) and every INVITE (407): a call connects only if telebridge answered
with the server-side credentials. What is asserted is what the two people
would notice (each hears the other's tone, a hang-up ends the call on both
sides), and that the browser never sees the password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.baresip import Baresip
from tests.e2e.gateway_web import assert_calls_released, gauges, page_url
from tests.e2e.harness import LOOPBACK, Gateway
from tests.e2e.kamailio import Kamailio
from tests.e2e.softphone import SoftphoneBrowser, SoftphonePage
from tests.e2e.wav_tone import dominant_tone

pytestmark = pytest.mark.e2e

ALICE_PBX_PASSWORD = "alice-pbx-secret-never-in-a-browser"
BOB_PASSWORD = "bob-pbx-secret"
# AUDIBLE_RMS: Chrome's noise suppression takes the page's steady tone from 0.35 to about
# 0.04 RMS within 2.5 s (tests/e2e/test_baresip.py); silence is ~0.
PAGE_TONE, PHONE_TONE, TOLERANCE_HZ, AUDIBLE_RMS = 440, 1000, 15, 0.02


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory, loopback_only: None) -> Iterator[Kamailio]:
    with Kamailio(tmp_path_factory.mktemp("kamailio"), {"alice": ALICE_PBX_PASSWORD, "bob": BOB_PASSWORD}) as kamailio:
        yield kamailio


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pbx: Kamailio) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("gateway")).running(
        f'[upstream]\nproxy = "udp:{pbx.address}"\ndomain = "{LOOPBACK}"\ntimeout = 3\n'
        f'[accounts.alice]\npassword = "{ALICE_PBX_PASSWORD}"\n'
    ) as gw:
        yield gw


@pytest.fixture(scope="module")
def browser(loopback_only: None) -> Iterator[SoftphoneBrowser]:
    with SoftphoneBrowser(tone_hz=PAGE_TONE) as b:
        yield b


@pytest.fixture
def phone(pbx: Kamailio, tmp_path: Path) -> Iterator[Baresip]:
    """bob's desk phone, registered to Kamailio, answering on its own; stopped before Kamailio."""
    with Baresip(tmp_path / "baresip", "bob", pbx.address, password=BOB_PASSWORD, tone_hz=PHONE_TONE) as baresip:
        yield baresip


@pytest.fixture
def page(gateway: Gateway, browser: SoftphoneBrowser) -> Iterator[SoftphonePage]:
    """alice's page, signed in with a token and registered (through telebridge) at Kamailio."""
    page = browser.open("alice", page_url(gateway, "user=alice&dev=1"))
    try:
        page.wait_state(registration="registered", timeout=15)
        assert gauges(gateway)["upstream_registrations"] == 1
        yield page
    finally:
        page.close()


def _assert_hears(page: SoftphonePage, hz: float) -> None:
    heard = page.frequency(1.5)
    assert abs(heard["hz"] - hz) < TOLERANCE_HZ and heard["rms"] > AUDIBLE_RMS, heard


def _assert_phone_hears(phone: Baresip, hz: float) -> None:
    tone = dominant_tone(phone.wait_for_audio(1.5))
    assert abs(tone.hz - hz) < TOLERANCE_HZ and tone.rms > AUDIBLE_RMS, tone


def _no_password_reached_the_page(page: SoftphonePage) -> None:
    assert not [f for f in page.frames() if ALICE_PBX_PASSWORD in f["data"]]


def test_page_calls_a_desk_phone_through_the_pbx(gateway: Gateway, page: SoftphonePage, phone: Baresip) -> None:
    """Issue 4 acceptance (PBX mode): the page dials bob; Kamailio's 407 is
    answered by telebridge; baresip answers; each side hears the other; the
    page's hang-up ends the call on baresip."""
    page.call("bob")
    phone.wait_event("CALL_ESTABLISHED", timeout=20)
    page.wait_state(call="connected", timeout=20)
    _assert_hears(page, PHONE_TONE)
    _assert_phone_hears(phone, PAGE_TONE)
    page.hangup()
    phone.wait_event("CALL_CLOSED", timeout=5)
    assert_calls_released(gateway)
    _no_password_reached_the_page(page)


def test_desk_phone_calls_the_page_through_the_pbx(gateway: Gateway, page: SoftphonePage, phone: Baresip) -> None:
    """baresip dials alice at Kamailio, which routes to telebridge's
    registration; the page rings, answers, audio both ways; baresip's
    hang-up ends the call in the page."""
    phone.dial(f"sip:alice@{LOOPBACK}:{phone.registrar.rsplit(':', 1)[1]}")
    page.wait_state(call="incoming", timeout=20)
    page.answer()
    page.wait_state(call="connected", timeout=20)
    phone.wait_event("CALL_ESTABLISHED", timeout=20)
    _assert_hears(page, PHONE_TONE)
    _assert_phone_hears(phone, PAGE_TONE)
    phone.hangup()
    page.wait_state(call="ended", timeout=5)
    assert_calls_released(gateway)
    _no_password_reached_the_page(page)
