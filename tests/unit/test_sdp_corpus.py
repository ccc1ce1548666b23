"""Issue 3 acceptance: a corpus of real Chrome, Firefox and Safari offers parses, round-trips and translates.

Every ``*.sdp`` file in tests/vectors/sdp is an offer a real browser made;
SOURCES.txt says where each came from. Each one must parse, serialise back
byte for byte, yield the audio m-line's ICE credentials and fingerprint,
become a plain RTP/AVP offer toward the SIP side, and, with a PCMU-only PBX
answer, give the browser an ICE-lite, passive-DTLS answer on its own mids.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telebridge.sdp import Media, SessionDescription, fingerprint, ice_credentials, parse_sdp
from telebridge.sdp_translation import WebrtcTransport, plain_offer_from_webrtc, webrtc_answer_from_plain

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sdp"
OFFERS = sorted(VECTORS.glob("*.sdp"))
GATEWAY = WebrtcTransport("gwfrag", "gateway-password-0123456789", "AB:" * 31 + "CD", "127.0.0.1", 40000)
SIP_ADDRESS = "192.0.2.10"
SHA256 = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")

# What the SIP leg must never see (issue 3 §1): ICE, DTLS, BUNDLE, ssrc/msid, extmap, rtcp-fb.
WEBRTC_ONLY = (
    "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "candidate", "end-of-candidates", "fingerprint", "setup",
    "ssrc", "ssrc-group", "msid", "msid-semantic", "extmap", "extmap-allow-mixed", "rtcp-fb", "rtcp-mux",
    "rtcp-rsize", "group", "bundle-only", "mid",
)

# A PBX that takes PCMU and DTMF only (as ASTERISK_PCMU_ANSWER in test_sdp.py).
PBX_SESSION = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=Asterisk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
PBX_AUDIO = (
    "m=audio 12000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n"
    "a=fmtp:126 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
# RFC 3264 §6.1: the answer's direction for what the PBX answered (sendrecv), within what the browser offered.
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "recvonly": "sendonly", "sendonly": "recvonly", "inactive": "inactive"}


def _text(path: Path) -> str:
    return path.read_bytes().decode()  # keep the CRLFs as sent


def _audio_index(sdp: SessionDescription) -> int:
    return next(i for i, m in enumerate(sdp.media) if m.kind == "audio")


def _attribute_names(media: Media) -> set[str]:
    return {value.partition(":")[0] for kind, value in media.lines if kind == "a"}


def _pbx_answer(plain_offer: SessionDescription, audio_index: int) -> SessionDescription:
    """PCMU for the audio m-line, every other m-line refused with port 0 (RFC 3264 §6)."""
    lines = [PBX_SESSION]
    for i, media in enumerate(plain_offer.media):
        lines.append(PBX_AUDIO if i == audio_index else f"m={media.kind} 0 {media.proto} {media.formats[0]}\r\n")
    return parse_sdp("".join(lines))


offers = pytest.mark.parametrize("path", OFFERS, ids=[p.name for p in OFFERS])


def test_the_corpus_has_every_browser_and_its_provenance() -> None:
    """At least Chromium, two Firefox and two Safari offers, each with a SOURCES.txt entry."""
    names = [p.name for p in OFFERS]
    assert sum(n.startswith("chromium-") for n in names) >= 1
    assert sum(n.startswith("firefox-") for n in names) >= 2
    assert sum(n.startswith("safari-") for n in names) >= 2
    sources = (VECTORS / "SOURCES.txt").read_text()
    for name in names:
        assert re.search(rf"^{re.escape(name)}$", sources, re.MULTILINE), f"{name} has no SOURCES.txt entry"
    assert any(".local " in _text(p) for p in OFFERS), "no offer with mDNS candidates"
    assert any(len(parse_sdp(_text(p)).media) == 1 for p in OFFERS), "no audio-only offer"


@offers
def test_offer_round_trips_byte_for_byte(path: Path) -> None:
    """Every line is kept, unknown ones included, CRLF as the browser sent it (issue 3 §1)."""
    text = _text(path)
    assert "\n" not in text.replace("\r\n", ""), "bare LF in a vector"
    assert str(parse_sdp(text)) == text


@offers
def test_audio_ice_credentials_and_fingerprint_are_found(path: Path) -> None:
    """Media level (Chromium, Safari) or session level (Firefox's fingerprint) alike."""
    offer = parse_sdp(_text(path))
    audio = offer.media[_audio_index(offer)]
    credentials = ice_credentials(offer, audio)
    assert credentials is not None and all(credentials)
    ufrag, pwd = credentials
    assert 4 <= len(ufrag) <= 256 and 22 <= len(pwd) <= 256  # RFC 8839 §5.4
    assert SHA256.match(fingerprint(offer, audio) or ""), fingerprint(offer, audio)
    assert offer.media_attribute(audio, "setup") == "actpass"
    assert audio.mid is not None


@offers
def test_candidates_parse_mdns_ones_included(path: Path) -> None:
    """RFC 8839 §5.1 fields; a ``.local`` host is a host candidate like any other (INTEROP.md)."""
    offer = parse_sdp(_text(path))
    local = 0
    for media in offer.media:
        for candidate in media.candidates():
            foundation, component, transport, priority, address, port, typ, kind, *extensions = candidate.split()
            assert foundation and component.isdigit() and transport.lower() in ("udp", "tcp")
            assert priority.isdigit() and port.isdigit() and int(port) <= 65535 and typ == "typ"
            assert kind in ("host", "srflx", "prflx", "relay") and len(extensions) % 2 == 0
            if address.endswith(".local"):
                local += 1
                assert kind == "host" and re.fullmatch(r"[0-9a-f-]{36}\.local", address)
    lines = _text(path).split("\r\n")
    assert local == sum(line.startswith("a=candidate:") and ".local " in line for line in lines)


@offers
def test_plain_offer_toward_sip_has_audio_without_webrtc_lines(path: Path) -> None:
    """RTP/AVP audio with the browser's Opus and/or G.711, and no ICE/DTLS/ssrc/extmap/rtcp-fb."""
    offer = parse_sdp(_text(path))
    index = _audio_index(offer)
    ports = [20000 + 2 * i for i in range(len(offer.media))]
    plain = plain_offer_from_webrtc(offer, ports, SIP_ADDRESS, 7)
    assert [m.kind for m in plain.media] == [m.kind for m in offer.media]
    audio = plain.media[index]
    assert (audio.port, audio.proto, audio.connection) == (ports[index], "RTP/AVP", SIP_ADDRESS)
    names = {(c.name.lower(), c.clock_rate) for c in audio.codecs()}
    assert names & {("opus", 48000), ("pcmu", 8000), ("pcma", 8000)}
    assert not _attribute_names(audio) & set(WEBRTC_ONLY)
    for media in plain.media:
        assert not _attribute_names(media) & (set(WEBRTC_ONLY) - {"rtcp-fb"})  # video keeps rtcp-fb
    assert not {value.partition(":")[0] for kind, value in plain.lines if kind == "a"} & set(WEBRTC_ONLY)
    text = str(plain)
    assert str(parse_sdp(text)) == text


@offers
def test_plain_offer_m_lines_are_valid_for_their_proto(path: Path) -> None:
    """RFC 8866 §5.14: under RTP/AVP or RTP/SAVP the <fmt> are RTP payload type numbers,
    refused m-lines included (a data channel is not an RTP stream)."""
    offer = parse_sdp(_text(path))
    plain = plain_offer_from_webrtc(offer, [20000 + 2 * i for i in range(len(offer.media))], SIP_ADDRESS, 7)
    for media in plain.media:
        if media.proto in ("RTP/AVP", "RTP/SAVP"):
            assert all(f.isdigit() for f in media.formats), f"m={media.kind} {media.port} {media.proto} {' '.join(media.formats)}"


@offers
def test_browser_answer_from_a_pcmu_only_pbx(path: Path) -> None:
    """ICE-lite, setup:passive, the browser's mids and its BUNDLE group, PCMU + the browser's DTMF type."""
    offer = parse_sdp(_text(path))
    index = _audio_index(offer)
    offered_audio = offer.media[index]
    plain = plain_offer_from_webrtc(offer, [20000 + 2 * i for i in range(len(offer.media))], SIP_ADDRESS, 7)
    answer = webrtc_answer_from_plain(offer, _pbx_answer(plain, index), GATEWAY, 9)
    assert answer.session_attribute("ice-lite") == ""
    assert len(answer.media) == len(offer.media)
    assert [m.kind for m in answer.media] == [m.kind for m in offer.media]
    audio = answer.media[index]
    event = next(c for c in offered_audio.codecs() if c.name.lower() == "telephone-event" and c.clock_rate == 8000)
    assert (audio.port, audio.proto) == (GATEWAY.port, "UDP/TLS/RTP/SAVPF")
    assert audio.formats == ["0", str(event.payload_type)]
    assert audio.attribute("setup") == "passive" and audio.mid == offered_audio.mid
    assert ice_credentials(answer, audio) == (GATEWAY.ufrag, GATEWAY.pwd)
    assert fingerprint(answer, audio) == GATEWAY.fingerprint
    assert audio.has("rtcp-mux") and audio.candidates() and audio.has("end-of-candidates")
    assert audio.direction == ANSWER_DIRECTION[offered_audio.direction]
    for i, media in enumerate(answer.media):
        if i != index:
            assert media.port == 0
        assert media.mid in (None, offer.media[i].mid)
    assert answer.bundle_groups == ([[offered_audio.mid]] if offer.bundle_groups else [])
    text = str(answer)
    assert str(parse_sdp(text)) == text
