"""Any SDP from either side, however broken, is a MediaRefused (a clear 4xx) or a call: never another
exception, and never a port left taken by a refused offer."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor

from telebridge.calls.call_media import CallMedia, MediaRefused
from telebridge.media.dtls import DtlsCertificate
from telebridge.media.relay import PortPool
from telebridge.media.udp_sockets import UdpSocketSet

VECTORS = Path(__file__).parents[1] / "vectors" / "sdp"
OFFERS = [path.read_bytes() for path in sorted(VECTORS.glob("*.sdp"))]
SIP_OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 96 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"m=video 30002 RTP/AVP 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n"
)
CERTIFICATE = DtlsCertificate()
SOCKETS = UdpSocketSet(reactor)  # type: ignore[arg-type]


def _mangled(sdp: bytes, data: st.DataObject) -> bytes:
    """``sdp`` with some lines dropped, duplicated, truncated or replaced by noise."""
    lines = sdp.split(b"\r\n")
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "cut", "noise", "digits"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
        elif action == "noise":
            lines[i] = data.draw(st.binary(max_size=40))
        else:
            lines[i] = lines[i].replace(b"9", data.draw(st.sampled_from([b"", b"x", b"99999", b"-1", b"/"])))
        if not lines:
            lines = [b""]
    return b"\r\n".join(lines)


def _call(pool: PortPool) -> CallMedia:
    return CallMedia(reactor, pool, SOCKETS, CERTIFICATE, "127.0.0.1", on_end=lambda reason: None, transcoding=True)  # type: ignore[arg-type]


@given(st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_broken_browser_offer_is_refused_cleanly(data: st.DataObject) -> None:
    pool = PortPool(48000, 48010)
    media = _call(pool)
    offer = _mangled(data.draw(st.sampled_from(OFFERS)), data)
    try:
        media.offer_from_browser(offer)
    except MediaRefused as e:
        assert 400 <= e.status < 500 and pool.in_use == 0, (e.reason, pool.in_use)
        return
    finally:
        media.close("test over")
    assert pool.in_use == 0


@given(st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_broken_sip_offer_or_re_offer_is_refused_cleanly(data: st.DataObject) -> None:
    pool = PortPool(48000, 48010)
    media = _call(pool)
    try:
        if data.draw(st.booleans()):
            media.offer_from_sip(_mangled(SIP_OFFER, data))
        else:
            media.offer_from_sip(SIP_OFFER)
            media.reoffer_from_sip(_mangled(SIP_OFFER, data))
    except MediaRefused as e:
        assert 400 <= e.status < 500, e.reason
    finally:
        media.close("test over")
    assert pool.in_use == 0


SIP_ANSWER = (
    b"v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    b"m=video 40002 RTP/AVP 120\r\na=rtpmap:120 VP8/90000\r\na=rtcp-fb:120 nack pli\r\n"
)


@given(st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_broken_sip_answer_is_refused_cleanly(data: st.DataObject) -> None:
    pool = PortPool(48000, 48010)
    media = _call(pool)
    try:
        media.offer_from_browser((VECTORS / "chromium-156-offer.sdp").read_bytes())
        media.answer_from_sip(_mangled(SIP_ANSWER, data))
        media.reoffer_from_sip(_mangled(SIP_ANSWER, data))
    except MediaRefused as e:
        assert 400 <= e.status < 500, e.reason
    finally:
        media.close("test over")
    assert pool.in_use == 0
