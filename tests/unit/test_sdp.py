"""SDP parsing, round trips and WebRTC <-> plain translation on a real Chromium offer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.media.srtp import new_crypto, parse_crypto
from telebridge.sdp import SdpError, fingerprint, ice_credentials, parse_sdp
from telebridge.sdp_translation import (
    WebrtcTransport,
    payload_type_map,
    plain_answer_from_webrtc,
    plain_offer_from_webrtc,
    webrtc_answer_from_plain,
    webrtc_offer_from_plain,
    with_codecs,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sdp"
CHROME = (VECTORS / "chromium-156-offer.sdp").read_bytes().decode()  # keep its CRLFs
GATEWAY = WebrtcTransport("gwfrag", "gateway-password-0123456789", "AB:" * 31 + "CD", "127.0.0.1", 40000)

ASTERISK_PCMU_ANSWER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=Asterisk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 12000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n"
    "a=fmtp:126 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    "m=video 0 RTP/AVP 96\r\n"
)


def test_chromium_offer_round_trips_byte_for_byte() -> None:
    """Every line is kept, unknown ones included (issue 3 §1)."""
    assert str(parse_sdp(CHROME)) == CHROME


def test_chromium_offer_accessors() -> None:
    """BUNDLE, mids, ICE credentials, fingerprint, codecs, candidates."""
    offer = parse_sdp(CHROME)
    assert offer.bundle_groups == [["0", "1"]]
    audio, video = offer.media
    assert (audio.mid, video.mid) == ("0", "1")
    assert ice_credentials(offer, audio) is not None
    assert fingerprint(offer, audio) is not None and len(fingerprint(offer, audio) or "") == 95
    names = [(c.name.lower(), c.clock_rate) for c in audio.codecs()]
    assert names[:5] == [("opus", 48000), ("red", 48000), ("g722", 8000), ("pcmu", 8000), ("pcma", 8000)]
    assert audio.candidates() and audio.has("rtcp-mux") and audio.direction == "sendrecv"


def test_plain_offer_keeps_browser_codecs_and_drops_webrtc_lines() -> None:
    """Toward the PBX: RTP/AVP, our address, no ICE/DTLS/extmap/ssrc (issue 3 §1)."""
    offer = parse_sdp(CHROME)
    plain = plain_offer_from_webrtc(offer, [20000, 20002], "127.0.0.1", 7)
    text = str(plain)
    audio, video = plain.media
    assert (audio.proto, audio.port, audio.connection) == ("RTP/AVP", 20000, "127.0.0.1")
    assert [(c.name.lower(), c.clock_rate) for c in audio.codecs()] == [
        ("opus", 48000), ("g722", 8000), ("pcmu", 8000), ("pcma", 8000), ("telephone-event", 48000), ("telephone-event", 8000)
    ]
    assert {c.name.lower() for c in video.codecs()} <= {"vp8", "h264"} and video.codecs()
    for junk in ("ice-", "fingerprint", "setup:", "extmap", "ssrc", "msid", "candidate", "group:BUNDLE", "rtcp-mux"):
        assert junk not in text, junk
    assert str(parse_sdp(text)) == text


def test_plain_offer_with_sdes_for_a_tls_sip_leg() -> None:
    """RTP/SAVP with a=crypto when the SIP leg asks for SDES (RFC 4568)."""
    offer = parse_sdp(CHROME)
    keys = new_crypto(1)
    plain = plain_offer_from_webrtc(offer, [20000, None], "127.0.0.1", 7, crypto=[keys, None])
    assert plain.media[0].proto == "RTP/SAVP"
    assert parse_crypto(plain.media[0].attribute("crypto") or "") == keys
    assert plain.media[1].port == 0


def test_webrtc_answer_from_a_pcmu_only_pbx() -> None:
    """The browser's answer: ICE-lite, passive DTLS, BUNDLE of what was accepted, PCMU + DTMF."""
    offer = parse_sdp(CHROME)
    answer = webrtc_answer_from_plain(offer, parse_sdp(ASTERISK_PCMU_ANSWER), GATEWAY, 9)
    audio, video = answer.media
    assert answer.session_attribute("ice-lite") == ""
    assert audio.formats == ["0", "126"] and audio.proto == "UDP/TLS/RTP/SAVPF"
    assert audio.attribute("setup") == "passive" and audio.attribute("mid") == "0"
    assert audio.attribute("ice-ufrag") == "gwfrag" and audio.has("rtcp-mux") and audio.has("end-of-candidates")
    assert audio.candidates() == ["1 1 udp 2130706431 127.0.0.1 40000 typ host"]
    assert video.port == 0
    assert answer.bundle_groups == [["0"]]


def test_hold_from_the_pbx_answer_is_reflected() -> None:
    """RFC 3264 §6.1: a sendonly answer from the PBX becomes sendonly toward the browser."""
    offer = parse_sdp(CHROME)
    held = parse_sdp(ASTERISK_PCMU_ANSWER.replace("a=sendrecv", "a=sendonly"))
    assert webrtc_answer_from_plain(offer, held, GATEWAY, 9).media[0].direction == "sendonly"


def test_pbx_offer_to_browser_and_back() -> None:
    """SIP -> browser: an actpass BUNDLE offer; the browser's answer gives the PBX its answer."""
    pbx_offer = parse_sdp(ASTERISK_PCMU_ANSWER.replace("m=video 0 RTP/AVP 96\r\n", ""))
    browser_offer = webrtc_offer_from_plain(pbx_offer, GATEWAY, 11)
    [audio] = browser_offer.media
    assert audio.attribute("setup") == "actpass" and browser_offer.bundle_groups == [["0"]]
    assert [c.name for c in audio.codecs()] == ["PCMU", "telephone-event"]
    browser_answer = parse_sdp(str(browser_offer).replace("a=setup:actpass", "a=setup:active"))
    plain = plain_answer_from_webrtc(pbx_offer, browser_answer, [22000], "127.0.0.1", 12)
    assert plain.media[0].formats == ["0", "126"] and plain.media[0].port == 22000


def test_mdns_candidates_parse() -> None:
    """INTEROP.md: a ``.local`` host candidate is just a candidate (not resolved, not refused)."""
    mdns = CHROME.replace("127.0.0.1 ", "3f1e9c7a-52b8-4d1e-9a0b-7c2d5e6f8a91.local ", 1)
    assert ".local" in parse_sdp(mdns).media[0].candidates()[0]


@pytest.mark.parametrize(
    "text",
    ["", "x=0\r\n", "v=1\r\no=- 1 1 IN IP4 h\r\n", "v=0\r\ns=-\r\n", "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio\r\n",
     "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 70000 RTP/AVP 0\r\n", "v=0\r\no=- 1 1 IN IP4 h\r\nthis is not sdp\r\n",
     "v=0\r\no=- 1 1 IN IP4 h\r\n" + "m=audio 1 RTP/AVP 0\r\n" * 20],
)
def test_malformed_sdp_raises_sdp_error(text: str) -> None:
    """Every bad body is one typed error."""
    with pytest.raises(SdpError):
        parse_sdp(text)


def test_bad_rtpmap_raises_sdp_error() -> None:
    """Codec accessors are total too."""
    sdp = parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus\r\n")
    with pytest.raises(SdpError):
        sdp.media[0].codecs()


@given(st.text(max_size=600))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_parses_or_raises_sdp_error(text: str) -> None:
    """The fuzz invariant, including the accessors."""
    try:
        sdp = parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\n" + text)
        for media in sdp.media:
            media.codecs(), media.direction, media.candidates()
            fingerprint(sdp, media)
    except SdpError:
        pass


def test_browser_answer_uses_the_browsers_payload_types_when_the_sip_side_renumbers() -> None:
    """RFC 3264 §6.1 says SHOULD: a phone answering telephone-event as 101 where Chrome
    offered 126 still gets it, and the browser's answer names 126."""
    offer = parse_sdp(CHROME)
    audio = offer.media[0]
    te = next(c for c in audio.codecs() if c.name == "telephone-event" and c.clock_rate == 8000)
    plain = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "m=video 0 RTP/AVP 96\r\n"
    )
    assert payload_type_map(plain.media[0], audio) == {0: 0, 101: te.payload_type}
    transport = WebrtcTransport("ufrag", "p" * 22, "AA:" * 31 + "AA", "127.0.0.1", 40000)
    answer = webrtc_answer_from_plain(offer, plain, transport, 1)
    assert answer.media[0].formats == ["0", str(te.payload_type)]


def _opus_only(offer: str) -> str:
    """The Chromium offer as a browser with Opus and telephone-event only would make it."""
    lines = []
    for line in offer.split("\r\n"):
        if line.startswith("m=audio"):
            line = "m=audio 51677 UDP/TLS/RTP/SAVPF 111 110"
        elif any(line.startswith(f"a={kind}:{pt} ") for kind in ("rtpmap", "fmtp", "rtcp-fb") for pt in (63, 9, 0, 8, 13, 126)):
            continue
        lines.append(line)
    return "\r\n".join(lines)


def test_transcodable_codecs_come_after_the_browsers_own_in_the_sip_offer() -> None:
    """Chrome offers G.722, PCMU and PCMA itself: nothing is added, so they are relayed."""
    offer = parse_sdp(CHROME)
    plain = plain_offer_from_webrtc(offer, [30000, None], "127.0.0.1", 7, transcoding=True)
    assert plain.media[0].formats == ["111", "9", "0", "8", "110", "126"]


def test_an_opus_only_browser_is_offered_to_sip_with_g711_and_g722_added() -> None:
    offer = parse_sdp(_opus_only(CHROME))
    plain = plain_offer_from_webrtc(offer, [30000, None], "127.0.0.1", 7, transcoding=True)
    names = [(c.name, c.clock_rate) for c in plain.media[0].codecs()]
    assert names == [("opus", 48000), ("telephone-event", 48000), ("PCMU", 8000), ("PCMA", 8000), ("G722", 8000), ("telephone-event", 8000)]
    assert plain.media[0].formats[:2] == ["111", "110"]
    # Without transcoding, such a browser and a G.711 phone simply share nothing.
    untouched = plain_offer_from_webrtc(offer, [30000, None], "127.0.0.1", 7)
    assert untouched.media[0].formats == ["111", "110"]


def test_a_sip_offer_without_opus_reaches_the_browser_with_opus_after_its_codecs() -> None:
    pbx_offer = parse_sdp(ASTERISK_PCMU_ANSWER.replace("m=video 0 RTP/AVP 96\r\n", ""))
    browser_offer = webrtc_offer_from_plain(pbx_offer, GATEWAY, 11, transcoding=True)
    codecs = browser_offer.media[0].codecs()
    assert [(c.name, c.clock_rate, c.channels) for c in codecs] == [
        ("PCMU", 8000, 1), ("telephone-event", 8000, 1), ("opus", 48000, 2), ("telephone-event", 48000, 1)
    ]
    assert codecs[2].payload_type not in (0, 126) and codecs[2].fmtp == "minptime=10;useinbandfec=1"


def test_with_codecs_shows_one_side_the_other_sides_codec_description() -> None:
    offer = parse_sdp(_opus_only(CHROME))
    answer = parse_sdp(ASTERISK_PCMU_ANSWER)
    browser_audio = offer.media[0]
    opus, event = browser_audio.codecs()
    view = with_codecs(answer.media[0], browser_audio, [opus, event])
    assert view.port == 12000 and view.formats == ["111", "110"] and view.direction == "sendrecv"
    assert [c.name for c in view.codecs()] == ["opus", "telephone-event"]
    assert not any(v.startswith("rtpmap:0 ") for _, v in view.lines)
