"""A SIP side's re-offer mid-call (a transfer, a new media server): answered from what the call agreed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from twisted.internet import reactor

from telebridge.calls.call_media import CallMedia, MediaRefused
from telebridge.media.dtls import DtlsCertificate
from telebridge.media.relay import PortPool
from telebridge.media.udp_sockets import UdpSocketSet
from telebridge.sdp import parse_sdp

CHROME_OFFER = (Path(__file__).parents[1] / "vectors" / "sdp" / "chromium-156-offer.sdp").read_bytes()
CERTIFICATE = DtlsCertificate()
SOCKETS = UdpSocketSet(reactor)  # type: ignore[arg-type]


def sip_sdp(port: int, formats: str, rtpmaps: str, host: str = "127.0.0.1") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\n{rtpmaps}m=video 0 RTP/AVP 96\r\n"
    ).encode()


PCMU_AND_EVENTS = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"


@pytest.fixture
def call() -> Iterator[CallMedia]:
    pool = PortPool(47400, 47500)
    media = CallMedia(reactor, pool, SOCKETS, CERTIFICATE, "127.0.0.1", on_end=lambda reason: None)  # type: ignore[arg-type]
    media.offer_from_browser(CHROME_OFFER)
    media.answer_from_sip(sip_sdp(40000, "0 101", PCMU_AND_EVENTS))
    yield media
    media.close("test over")
    assert pool.in_use == 0


def test_a_re_offer_is_answered_with_the_call_s_codecs_only(call: CallMedia) -> None:
    """The browser still sends PCMU: answering G.722 too would let the SIP side send what the browser cannot play."""
    reoffer = sip_sdp(41000, "9 8 0 101", "a=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\n" + PCMU_AND_EVENTS, host="127.0.0.5")
    answer = parse_sdp(call.reoffer_from_sip(reoffer))
    assert answer.media[0].formats == ["0", "101"]
    assert call.bridge is not None and call.bridge.plain.remote == ("127.0.0.5", 41000)


def test_codecs_numbered_anew_are_mapped_anew(call: CallMedia) -> None:
    reoffer = sip_sdp(41000, "0 96", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n")
    call.reoffer_from_sip(reoffer)
    assert call.bridge is not None
    browser_event = next(c.payload_type for c in parse_sdp(CHROME_OFFER).media[0].codecs() if c.name == "telephone-event" and c.clock_rate == 8000)
    assert call.bridge.plain.outgoing.payload_types.get(browser_event) == 96
    assert call.bridge.webrtc.outgoing.payload_types.get(96) == browser_event


def test_a_re_offer_without_the_call_s_codec_is_refused_and_changes_nothing(call: CallMedia) -> None:
    with pytest.raises(MediaRefused, match="PCMU") as refused:
        call.reoffer_from_sip(sip_sdp(41000, "8", "a=rtpmap:8 PCMA/8000\r\n", host="127.0.0.5"))
    assert refused.value.status == 488
    assert call.bridge is not None and call.bridge.plain.remote == ("127.0.0.1", 40000)


def test_a_bad_rtpmap_is_a_clear_400_not_a_crash() -> None:
    pool = PortPool(47400, 47500)
    media = CallMedia(reactor, pool, SOCKETS, CERTIFICATE, "127.0.0.1", on_end=lambda reason: None)  # type: ignore[arg-type]
    with pytest.raises(MediaRefused, match="rtpmap") as refused:
        media.offer_from_browser(CHROME_OFFER.replace(b"a=rtpmap:111 opus/48000/2", b"a=rtpmap:111 opus"))
    assert refused.value.status == 400 and pool.in_use == 0
