"""Call quality read from the legs: what came in, what was lost, what the peer reported."""

from __future__ import annotations

import struct

from telebridge.media.dtls import DtlsCertificate
from telebridge.media.ice import IceLiteAgent
from telebridge.media.legs import OutgoingStream, PlainLeg, WebrtcLeg
from telebridge.media.quality import StreamQuality, call_quality
from telebridge.media.video import VideoPath

PEER = ("127.0.0.9", 30000)


def _rtp(seq: int, ssrc: int = 7, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + bytes(160)


def _legs() -> tuple[WebrtcLeg, PlainLeg]:
    webrtc = WebrtcLeg(IceLiteAgent("gw", "gateway-password-0123456789"), DtlsCertificate(), False, None, OutgoingStream.new(8000))
    plain = PlainLeg(remote=PEER, outgoing=OutgoingStream.new(8000))
    plain.start(0.0)
    return webrtc, plain


def test_loss_and_jitter_of_the_sip_side_s_audio() -> None:
    webrtc, plain = _legs()
    for seq in [n for n in range(100) if n % 10 != 3]:  # every tenth packet lost
        plain.datagram_received(_rtp(seq), PEER, seq * 0.02)
    sip = next(s for s in call_quality(webrtc, plain, None) if s.leg == "sip")
    assert (sip.kind, sip.packets_in, sip.lost) == ("audio", 90, 10)
    assert abs(sip.loss - 0.10) < 1e-9 and sip.poor
    assert sip.jitter_ms < 1 and sip.rtt_ms is None and sip.peer_lost is None
    assert "sip audio: in 90 (lost 10, 10.0 %)" in str(sip)


def test_video_streams_are_reported_only_when_video_was_relayed() -> None:
    webrtc, plain = _legs()
    assert [(s.leg, s.kind) for s in call_quality(webrtc, plain, None)] == [("browser", "audio"), ("sip", "audio")]
    webrtc.add_video(VideoPath({96}), 0.0)
    video_plain = PlainLeg(remote=("127.0.0.9", 30002), outgoing=OutgoingStream.new(90000), media_timeout=None)
    streams = call_quality(webrtc, plain, video_plain)
    assert [(s.leg, s.kind) for s in streams] == [("browser", "audio"), ("sip", "audio"), ("browser", "video"), ("sip", "video")]
    assert not any(s.poor for s in streams)


def test_a_clean_stream_is_not_poor() -> None:
    assert not StreamQuality("browser", "audio", 1000, 1000, 0, 3.0, 20.0, 0).poor
    assert StreamQuality("browser", "audio", 1000, 1000, 0, 55.0, 20.0, 0).poor
