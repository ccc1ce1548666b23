"""The softphone page in headless Chromium and baresip, a real SIP phone, through the embedded gateway.

baresip registers at telebridge's own registrar with digest credentials and
plays 1000 Hz; the page's fake microphone plays 440 Hz. What is asserted is
what the two people on the call would notice: each hears the other's tone,
a hang-up on one side ends the call on the other, hold and resume bring the
sound back, a page that loses its connection for a moment keeps its call,
and a page that is closed ends it. After every test the gateway holds no
call, no port pair and no call timer.
"""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from tests.e2e.baresip import Baresip
from tests.e2e.gateway_web import assert_calls_released, page_url
from tests.e2e.harness import LOOPBACK, Gateway
from tests.e2e.softphone import SoftphoneBrowser, SoftphonePage
from tests.e2e.wav_tone import Tone, dominant_tone, read_samples, seconds_of, tone_of, tone_snr

pytestmark = pytest.mark.e2e

PHONE_USER = "bob"
PHONE_PASSWORD = "bob-digest-secret-for-tests"
PAGE_TONE = 440
PHONE_TONE = 1000
TOLERANCE_HZ = 15
# Full scale is 1.0; the tones play at 0.5 peak (0.35 RMS), silence is ~0. The page's
# tone goes through Chrome's noise suppression (the softphone keeps the browser's audio
# processing on, as users need echo cancellation), which takes a steady tone down from
# 0.35 to a plateau of about 0.04 RMS within 2.5 s (measured in baresip's recording).
AUDIBLE_RMS = 0.02
G711 = ("PCMU/8000/1", "PCMA/8000/1")
OPUS_FIRST = ("opus/48000/2", "PCMU/8000/1")
# Transcoded tones must land within 10 Hz and this far above everything else
# (noise, distortion, aliases): G.711 alone gives about 38 dB on a tone, and
# the settled calls here measured 29-42 dB at the page, 36-43 dB at the phone; 20 dB is still a
# clean tone to a listener, while a broken resampler or a wrong clock rate
# (aliases, a pitch shift) or dropped frames (clicks) falls far below it.
RECORDED_USER = "alice-recorded"
TRANSCODED_SNR_DB = 20
TRANSCODED_TOLERANCE_HZ = 10
# Makes the page's peer connection offer and accept Opus only (and
# telephone-event), as a browser would that had no G.711 or G.722.
OPUS_ONLY = """() => {
  const addTrack = RTCPeerConnection.prototype.addTrack;
  RTCPeerConnection.prototype.addTrack = function (...args) {
    const sender = addTrack.apply(this, args);
    const codecs = RTCRtpReceiver.getCapabilities("audio").codecs.filter((c) => /opus|telephone-event/i.test(c.mimeType));
    for (const t of this.getTransceivers()) if (t.sender === sender) t.setCodecPreferences(codecs);
    return sender;
  };
}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, loopback_only: None) -> Iterator[Gateway]:
    """One telebridge in embedded mode that knows the phone's password; its log must hold no traceback."""
    # The default digest settings: baresip 1.0 must register with them.
    workdir = tmp_path_factory.mktemp("gateway")
    with Gateway(workdir).running(
        f'\n[users.{PHONE_USER}]\npassword = "{PHONE_PASSWORD}"\n'
        f'\n[recording]\nfolder = "{workdir / "recordings"}"\nusers = ["{RECORDED_USER}"]\n'
        '\n[media]\nsip_srtp = "tls"\n'
    ) as gw:
        yield gw


@pytest.fixture(scope="module")
def browser(loopback_only: None) -> Iterator[SoftphoneBrowser]:
    """One headless Chromium whose microphone plays 440 Hz; each page has its own context."""
    with SoftphoneBrowser(tone_hz=PAGE_TONE) as b:
        yield b


@pytest.fixture
def phone(request: pytest.FixtureRequest, gateway: Gateway, tmp_path: Path) -> Iterator[Baresip]:
    """baresip registered at the gateway as bob, answering on its own, playing 1000 Hz;
    G.711 unless the test asks for other codecs (``indirect`` parametrization)."""
    codecs = getattr(request, "param", G711)
    baresip = Baresip(
        tmp_path / "baresip", PHONE_USER, f"{LOOPBACK}:{gateway.sip_port}", password=PHONE_PASSWORD, tone_hz=PHONE_TONE, codecs=codecs
    )
    try:
        baresip.start()
        yield baresip
    finally:
        baresip.stop()


def _open(browser: SoftphoneBrowser, gateway: Gateway, user: str) -> SoftphonePage:
    """A page signed in as ``user`` (dev token) and registered."""
    page = browser.open(user, page_url(gateway, f"user={user}&dev=1"))
    page.wait_state(registration="registered")
    return page


def _assert_page_hears(page: SoftphonePage, hz: float) -> None:
    heard = page.frequency(1.5)
    assert abs(heard["hz"] - hz) < TOLERANCE_HZ and heard["rms"] > AUDIBLE_RMS, heard


def _assert_tone(tone: Tone, hz: float) -> None:
    assert abs(tone.hz - hz) < TOLERANCE_HZ and tone.rms > AUDIBLE_RMS, tone


def _phone_calls_page(phone: Baresip, page: SoftphonePage, uri: str) -> None:
    """baresip dials ``uri`` (the page's user); the page rings, answers, and both see the call up."""
    phone.dial(uri)
    page.wait_state(call="incoming", timeout=20)
    page.answer()
    page.wait_state(call="connected", timeout=20)
    phone.wait_event("CALL_ESTABLISHED", timeout=20)


def _page_calls_phone(page: SoftphonePage, phone: Baresip) -> None:
    page.call(PHONE_USER)
    phone.wait_event("CALL_ESTABLISHED", timeout=20)
    page.wait_state(call="connected", timeout=20)


def test_page_calls_baresip_audio_both_ways_and_either_side_hangs_up(
    gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip
) -> None:
    """The page dials bob (digest-registered baresip, auto-answer): the page hears 1000 Hz, baresip
    hears 440 Hz; the page's hang-up closes the call on baresip; in a second call baresip's
    hang-up ends the call in the page."""
    page = _open(browser, gateway, "alice-out")
    try:
        _page_calls_phone(page, phone)
        _assert_page_hears(page, PHONE_TONE)
        assert page.stats()["inbound"]["codec"] == "audio/PCMU"
        _assert_tone(dominant_tone(phone.wait_for_audio(1.5)), PAGE_TONE)
        page.hangup()
        phone.wait_event("CALL_CLOSED", timeout=5)
        page.wait_state(call="ended")
        assert_calls_released(gateway)

        _page_calls_phone(page, phone)
        phone.hangup()
        page.wait_state(call="ended", timeout=5)
        assert page.last_error() == ""
        phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()


@pytest.mark.parametrize("phone", [OPUS_FIRST], indirect=True, ids=["opus"])
def test_baresip_calls_the_page_audio_both_ways(gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip) -> None:
    """bob dials the browser user (digest on the INVITE too) offering Opus first; the page rings,
    answers, and each side hears the other's tone over Opus, relayed as it is."""
    page = _open(browser, gateway, "alice-in")
    try:
        _phone_calls_page(phone, page, f"sip:alice-in@{LOOPBACK}:{gateway.sip_port}")
        _assert_page_hears(page, PHONE_TONE)
        assert page.stats()["inbound"]["codec"] == "audio/opus"
        _assert_tone(dominant_tone(phone.wait_for_audio(1.5)), PAGE_TONE)
        page.hangup()
        phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()


def _packets_received(rtcp_event: dict[str, Any]) -> int:
    """Packets baresip had received from the gateway when this RTCP sender report came."""
    return int(rtcp_event["rtcp_stats"]["rx"]["sent"])


def test_baresip_holds_for_30_s_and_resumes_with_audio_both_ways(
    gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip
) -> None:
    """bob holds (re-INVITE a=sendonly; baresip 1.0 then sends nothing), 30 s pass, bob resumes
    (a=sendrecv): the call is still there, the page hears 1000 Hz again from the SSRC it heard
    before, and the page's audio reaches baresip again."""
    page = _open(browser, gateway, "alice-hold")
    try:
        _page_calls_phone(page, phone)
        _assert_page_hears(page, PHONE_TONE)
        _assert_tone(dominant_tone(phone.wait_for_audio(1.0)), PAGE_TONE)
        ssrc = page.stats()["inbound"]["ssrc"]

        phone.hold()
        phone.wait_event("CALL_REMOTE_SDP", param="answer", timeout=10)
        held_at = _packets_received(phone.wait_event("CALL_RTCP", fresh=True, timeout=12))
        # Nothing to wait for: a held call is silent; the point is that it stays up.
        time.sleep(30)
        assert phone.events("CALL_CLOSED") == [], "the gateway ended the held call"
        # The gateway answered recvonly, so it sent bob nothing while he held (RFC 3264 §6.1).
        still_held = _packets_received(phone.wait_event("CALL_RTCP", fresh=True, timeout=12))
        assert still_held - held_at < 5, (held_at, still_held)
        assert page.state()["call"] == "connected"
        phone.resume()
        phone.wait_event("CALL_REMOTE_SDP", param="answer", timeout=10)
        _assert_page_hears(page, PHONE_TONE)
        assert page.stats()["inbound"]["ssrc"] == ssrc
        # baresip 1.0 stops its received-audio recording at the hold (see
        # Baresip.recordings): its receive count between two RTCP reports
        # (5 s apart) that both came after the resume is the witness here.
        first = _packets_received(phone.wait_event("CALL_RTCP", fresh=True, timeout=12))
        second = _packets_received(phone.wait_event("CALL_RTCP", timeout=12))
        assert second - first > 100, (first, second)

        page.hangup()
        phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()


def test_page_reconnects_mid_call_and_the_call_goes_on(gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip) -> None:
    """The page's WebSocket drops abnormally mid-call; the page re-registers as the same instance
    within the grace; both sides still hear each other and baresip never got a BYE until the
    page hangs up."""
    page = _open(browser, gateway, "alice-drop")
    try:
        _page_calls_phone(page, phone)
        recording = phone.wait_for_audio(1.0)
        instance = page.evaluate("window.softphone.instanceId")

        page.drop_socket()
        page.wait_for("window.softphone.state.registration !== 'registered'", timeout=5)
        page.wait_state(registration="registered", timeout=15)
        assert page.evaluate("window.softphone.instanceId") == instance
        assert page.state()["call"] == "connected"
        reconnected = seconds_of(recording)
        _assert_page_hears(page, PHONE_TONE)
        phone.wait_for_audio(reconnected + 1.5)
        _assert_tone(dominant_tone(recording, start=reconnected), PAGE_TONE)
        assert phone.events("CALL_CLOSED") == []

        page.hangup()
        phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()


def test_closing_the_page_mid_call_sends_baresip_a_bye_within_2_s(
    gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip
) -> None:
    """A user closing the tab mid-call: baresip's call ends (BYE) within 2 s."""
    page = _open(browser, gateway, "alice-close")
    try:
        _page_calls_phone(page, phone)
    finally:
        page.close()
    phone.wait_event("CALL_CLOSED", timeout=2)
    assert_calls_released(gateway)


def _assert_transcoded_both_ways(page: SoftphonePage, phone: Baresip) -> None:
    """The phone hears the page's tone over its own codec, the page the phone's over Opus,
    each at the right pitch and clean (TRANSCODED_SNR_DB). The page listens after the
    phone's 2.5 s: in the first second one frame may be concealed while the jitter
    buffers on both sides settle (measured 20-21 dB then, 29-42 dB after). The page's
    figure is the median of its 100 ms snapshots: once, on a loaded CI machine, Chrome's
    own playout glitched (its send jitter was 16.7 ms, 0.1-0.3 ms on every other call)
    and one snapshot took the whole window's SNR to 18 dB."""
    recording = phone.wait_for_audio(2.5)
    samples, rate = read_samples(recording)
    last = samples[-rate * 3 // 2 :]
    tone = dominant_tone(recording, start=-1.5)
    assert abs(tone.hz - PAGE_TONE) < TRANSCODED_TOLERANCE_HZ and tone.rms > AUDIBLE_RMS, tone
    snr = tone_snr(last, rate, PAGE_TONE)
    assert snr > TRANSCODED_SNR_DB, f"{snr:.1f} dB"
    heard = page.frequency(1.5)
    assert abs(heard["hz"] - PHONE_TONE) < TRANSCODED_TOLERANCE_HZ and heard["snr"] > TRANSCODED_SNR_DB, heard
    assert page.stats()["inbound"]["codec"] == "audio/opus"


@pytest.mark.parametrize(
    "phone", [("PCMU/8000/1",), ("PCMA/8000/1",), ("G722/8000/1",)], indirect=True, ids=["pcmu", "pcma", "g722"]
)
def test_opus_only_page_calls_a_phone_without_opus_and_is_transcoded(
    gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip
) -> None:
    """A page that speaks only Opus dials baresip restricted to one narrowband or wideband codec:
    the gateway transcodes, and each side hears the other's tone at its pitch with a clean SNR."""
    page = _open(browser, gateway, "alice-opus-only")
    page.evaluate(OPUS_ONLY)
    try:
        _page_calls_phone(page, phone)
        _assert_transcoded_both_ways(page, phone)
        page.hangup()
        phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()


@pytest.mark.parametrize("phone", [("PCMU/8000/1",)], indirect=True, ids=["pcmu"])
def test_phone_without_opus_calls_an_opus_only_page_and_is_transcoded(
    gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip
) -> None:
    """baresip offering only PCMU calls an Opus-only page: the page is offered Opus as well,
    takes it, and the call is transcoded both ways."""
    page = _open(browser, gateway, "alice-opus-in")
    page.evaluate(OPUS_ONLY)
    try:
        _phone_calls_page(phone, page, f"sip:alice-opus-in@{LOOPBACK}:{gateway.sip_port}")
        _assert_transcoded_both_ways(page, phone)
        phone.hangup()
        page.wait_state(call="ended", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()


def test_a_recorded_call_holds_the_callers_tone_on_one_channel_and_the_callees_on_the_other(
    gateway: Gateway, browser: SoftphoneBrowser, phone: Baresip
) -> None:
    """alice-recorded is listed under [recording]: her call to baresip leaves a stereo WAV with
    her 440 Hz on the left (caller) and baresip's 1000 Hz on the right, and a JSON sidecar
    naming the parties, codecs and times; the WAV is readable while the call still runs."""
    folder = gateway.workdir / "recordings"
    page = _open(browser, gateway, RECORDED_USER)
    try:
        _page_calls_phone(page, phone)
        phone.wait_for_audio(3.0)
        [wav] = folder.glob("*.wav")
        with wave.open(str(wav)) as running:  # a valid file mid-call, not only after it
            assert running.getnchannels() == 2 and running.getnframes() > 0
        page.hangup()
        phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()
    with wave.open(str(wav)) as finished:
        rate = finished.getframerate()
        frames = numpy.frombuffer(finished.readframes(finished.getnframes()), "<i2").reshape(-1, 2) / 32768
    assert len(frames) > 2.5 * rate
    middle = frames[len(frames) // 2 - rate : len(frames) // 2 + rate]
    left, right = tone_of(middle[:, 0], rate), tone_of(middle[:, 1], rate)
    assert abs(left.hz - PAGE_TONE) < TOLERANCE_HZ and left.rms > AUDIBLE_RMS, left
    assert abs(right.hz - PHONE_TONE) < TOLERANCE_HZ and right.rms > AUDIBLE_RMS, right
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert sidecar["caller"] == RECORDED_USER and sidecar["callee"] == PHONE_USER
    assert sidecar["end"] is not None and sidecar["start"] is not None
    assert "PCMU" in json.dumps(sidecar["codecs"]).upper()


@pytest.fixture
def tls_phone(gateway: Gateway, tmp_path: Path) -> Iterator[Baresip]:
    """baresip registered over TLS that insists on SRTP (mediaenc=srtp-mand: RTP/SAVP with SDES)."""
    baresip = Baresip(
        tmp_path / "baresip-tls", PHONE_USER, f"{LOOPBACK}:{gateway.tls_port}", password=PHONE_PASSWORD,
        tone_hz=PHONE_TONE, transport="tls", media_encryption="srtp-mand",
    )
    try:
        baresip.start()
        yield baresip
    finally:
        baresip.stop()


def test_a_phone_on_tls_gets_srtp_keyed_by_sdes_both_ways(gateway: Gateway, browser: SoftphoneBrowser, tls_phone: Baresip) -> None:
    """[media] sip_srtp = "tls": the page's call to a phone registered over TLS is offered
    RTP/SAVP with an SDES key, which a phone that accepts only SRTP takes, and the tones
    cross both ways; the phone's own SRTP offer to the page is answered with a key too."""
    page = _open(browser, gateway, "alice-srtp")
    try:
        _page_calls_phone(page, tls_phone)
        _assert_page_hears(page, PHONE_TONE)
        _assert_tone(dominant_tone(tls_phone.wait_for_audio(1.5)), PAGE_TONE)
        page.hangup()
        tls_phone.wait_event("CALL_CLOSED", timeout=5)
        assert_calls_released(gateway)

        _phone_calls_page(tls_phone, page, f"sip:alice-srtp@{LOOPBACK}:{gateway.tls_port};transport=tls")
        _assert_page_hears(page, PHONE_TONE)
        tls_phone.hangup()
        page.wait_state(call="ended", timeout=5)
        assert_calls_released(gateway)
    finally:
        page.close()
    # baresip logs this once per call whose SDES keys it accepted: both calls were SRTP.
    assert tls_phone.log_text().count("SRTP is Enabled") == 2
