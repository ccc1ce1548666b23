"""Video through a call's media: which m-lines are relayed, on which ports, numbered how."""

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


def sip_answer(audio_port: int, video_port: int, video: str = "m=video {port} RTP/AVP 120\r\na=rtpmap:120 VP8/90000\r\n") -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {audio_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" + video.format(port=video_port)
    ).encode()


SIP_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "m=video 30002 RTP/AVP 97 126\r\na=rtpmap:97 H263-1998/90000\r\n"
    "a=rtpmap:126 H264/90000\r\na=fmtp:126 profile-level-id=42e01f;packetization-mode=1\r\n"
).encode()


def browser_answer(offer: object, video_port: int) -> bytes:
    """A browser's answer to our offer: audio PCMU, video as offered (or refused with port 0)."""
    return (
        "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0" + (" 1" if video_port else "") + "\r\n"
        "a=ice-ufrag:brws\r\na=ice-pwd:browser-password-0123456789\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\na=setup:active\r\na=rtcp-mux\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        f"m=video {video_port} UDP/TLS/RTP/SAVPF 126\r\nc=IN IP4 127.0.0.1\r\na=mid:1\r\na=setup:active\r\na=rtcp-mux\r\n"
        "a=rtpmap:126 H264/90000\r\na=sendrecv\r\n"
    ).encode()


@pytest.fixture
def pool() -> PortPool:
    return PortPool(47000, 47100)


@pytest.fixture
def media(pool: PortPool) -> Iterator[CallMedia]:
    call = CallMedia(reactor, pool, SOCKETS, CERTIFICATE, "127.0.0.1", on_end=lambda reason: None)  # type: ignore[arg-type]
    yield call
    call.close("test over")
    assert pool.in_use == 0


def _feedback(media_line: object) -> set[str]:
    return {value.split(" ", 1)[1] for value in media_line.attributes("rtcp-fb")}  # type: ignore[attr-defined]


def test_a_browser_video_stream_gets_a_plain_leg_of_its_own(media: CallMedia, pool: PortPool) -> None:
    plain = parse_sdp(media.offer_from_browser(CHROME_OFFER))
    audio, video = plain.media
    assert media.bridge is not None and pool.in_use == 3  # browser port, audio pair, video pair
    assert video.port == media.bridge.video_port and video.port not in (0, audio.port) and video.proto == "RTP/AVP"
    assert {c.name for c in video.codecs()} == {"VP8", "H264"}
    # Only the keyframe requests are relayed, so only they are offered.
    assert _feedback(video) == {"nack pli", "ccm fir"}


def test_the_sip_answer_s_video_reaches_the_browser_answer_in_the_bundle(media: CallMedia) -> None:
    media.offer_from_browser(CHROME_OFFER)
    answer = parse_sdp(media.answer_from_sip(sip_answer(40000, 40002)))
    audio, video = answer.media
    assert video.port == audio.port and video.formats == ["96"]  # the browser's own number for VP8
    assert ("a", "group:BUNDLE 0 1") in answer.lines
    assert _feedback(video) == {"nack pli", "ccm fir"}
    bridge = media.bridge
    assert bridge is not None and bridge.webrtc.video is not None and bridge.video_plain is not None
    assert bridge.video_plain.remote == ("127.0.0.1", 40002)
    assert bridge.webrtc.video.outgoing.payload_types == {120: 96}
    assert bridge.video_plain.outgoing.payload_types == {96: 120}
    assert 96 in bridge.webrtc.video.payload_types and 111 not in bridge.webrtc.video.payload_types


def test_video_the_sip_side_refuses_gives_its_ports_back(media: CallMedia, pool: PortPool) -> None:
    media.offer_from_browser(CHROME_OFFER)
    answer = parse_sdp(media.answer_from_sip(sip_answer(40000, 0)))
    assert answer.media[1].port == 0 and answer.media[0].port
    assert pool.in_use == 2 and media.bridge is not None and media.bridge.webrtc.video is None


def test_browser_video_outside_the_audio_s_bundle_is_refused(media: CallMedia, pool: PortPool) -> None:
    unbundled = CHROME_OFFER.replace(b"a=group:BUNDLE 0 1", b"a=group:BUNDLE 0")
    plain = parse_sdp(media.offer_from_browser(unbundled))
    assert plain.media[1].port == 0 and pool.in_use == 2


def test_an_sdes_encrypted_sip_leg_gets_a_key_of_its_own_for_video(pool: PortPool) -> None:
    call = CallMedia(reactor, pool, SOCKETS, CERTIFICATE, "127.0.0.1", on_end=lambda reason: None, sip_srtp="always")  # type: ignore[arg-type]
    try:
        audio, video = parse_sdp(call.offer_from_browser(CHROME_OFFER)).media
        assert audio.proto == video.proto == "RTP/SAVP" and video.port
        assert audio.attributes("crypto") != video.attributes("crypto") and len(video.attributes("crypto")) == 1
        # The SIP side answers video over plain RTP: not what was offered (RFC 3264 §6), a clear refusal.
        with pytest.raises(MediaRefused, match="video"):
            call.answer_from_sip(sip_answer(40000, 40002).replace(b"RTP/AVP 0", b"RTP/SAVP 0\r\na=crypto:" + str(audio.attributes("crypto")[0]).encode()))
    finally:
        call.close("test over")


def test_sip_video_is_offered_to_the_browser_with_keyframe_feedback(media: CallMedia, pool: PortPool) -> None:
    offer = parse_sdp(media.offer_from_sip(SIP_OFFER))
    audio, video = offer.media
    assert video.port == audio.port and video.formats == ["126"]  # H.263 is not relayed
    assert _feedback(video) == {"nack pli", "ccm fir"}
    assert ("a", "group:BUNDLE 0 1") in offer.lines
    assert media.bridge is not None and media.bridge.video_plain is not None
    assert media.bridge.video_plain.remote == ("127.0.0.1", 30002) and pool.in_use == 3


def test_the_browser_s_video_answer_reaches_the_sip_side(media: CallMedia, pool: PortPool) -> None:
    offer = parse_sdp(media.offer_from_sip(SIP_OFFER))
    plain = parse_sdp(media.answer_from_browser(browser_answer(offer, video_port=9)))
    assert media.bridge is not None
    assert plain.media[1].port == media.bridge.video_port and plain.media[1].formats == ["126"]
    assert not plain.media[1].attributes("rtcp-fb")


def test_video_the_browser_refuses_gives_its_ports_back(media: CallMedia, pool: PortPool) -> None:
    offer = parse_sdp(media.offer_from_sip(SIP_OFFER))
    plain = parse_sdp(media.answer_from_browser(browser_answer(offer, video_port=0)))
    assert plain.media[1].port == 0 and pool.in_use == 2


def test_re_offers_keep_the_video_stream(media: CallMedia) -> None:
    media.offer_from_browser(CHROME_OFFER)
    media.answer_from_sip(sip_answer(40000, 40002))
    assert media.bridge is not None and media.bridge.video_plain is not None
    # The SIP side moves its video (a transfer, a new media server): we follow, and answer on our same ports.
    moved = parse_sdp(media.reoffer_from_sip(sip_answer(41000, 41002)))
    assert moved.media[1].port == media.bridge.video_port
    assert media.bridge.video_plain.remote == ("127.0.0.1", 41002)
    # The browser re-offers (an ICE restart, say): video stays in its answer, in the BUNDLE.
    again = parse_sdp(media.reoffer_from_browser(CHROME_OFFER))
    assert again.media[1].port == again.media[0].port != 0


def test_a_payload_type_both_m_lines_claim_stays_audio(media: CallMedia) -> None:
    """A client that breaks RFC 9143 by numbering a video codec like its Opus: its voice is not lost to video."""
    sloppy = CHROME_OFFER.replace(b"m=video 49246 UDP/TLS/RTP/SAVPF 96 97", b"m=video 49246 UDP/TLS/RTP/SAVPF 96 111 97")
    media.offer_from_browser(sloppy)
    assert media.bridge is not None and media.bridge.webrtc.video is not None
    assert 111 not in media.bridge.webrtc.video.payload_types and 96 in media.bridge.webrtc.video.payload_types


LINPHONE_STYLE_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 96 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
    "m=video 30002 RTP/AVP 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\n"
).encode()


def test_payload_types_shared_by_plain_m_lines_are_made_unique_in_the_bundle(media: CallMedia) -> None:
    """Linphone numbers its Opus and its VP8 both 96; in one BUNDLE the browser could not tell them apart."""
    offer = parse_sdp(media.offer_from_sip(LINPHONE_STYLE_OFFER))
    audio, video = offer.media
    assert not set(audio.formats) & set(video.formats)
    vp8 = next(c.payload_type for c in video.codecs() if c.name == "VP8")
    assert vp8 != 96 and {c.name for c in video.codecs()} == {"VP8", "H264"}
    assert f"rtcp-fb:{vp8} nack pli" in [value for kind, value in video.lines]
    # The browser answers VP8 at our number; the SIP side is answered at its own, and the relay maps both ways.
    answer = browser_answer(offer, video_port=9).replace(b"UDP/TLS/RTP/SAVPF 126", f"UDP/TLS/RTP/SAVPF {vp8}".encode())
    answer = answer.replace(b"a=rtpmap:126 H264/90000", f"a=rtpmap:{vp8} VP8/90000".encode())
    answer = answer.replace(b"m=audio 9 UDP/TLS/RTP/SAVPF 0", b"m=audio 9 UDP/TLS/RTP/SAVPF 96").replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:96 opus/48000/2")
    plain = parse_sdp(media.answer_from_browser(answer))
    assert plain.media[1].formats == ["96"] and plain.media[0].formats == ["96"]
    assert media.bridge is not None and media.bridge.webrtc.video is not None and media.bridge.video_plain is not None
    assert media.bridge.webrtc.video.outgoing.payload_types == {96: vp8}
    assert media.bridge.video_plain.outgoing.payload_types == {vp8: 96}
    assert media.bridge.webrtc.outgoing.payload_types == {} and vp8 in media.bridge.webrtc.video.payload_types
