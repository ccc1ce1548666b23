"""Video through a call (issue 3): aiortc as a browser with a camera, a plain RTP video endpoint as the SIP side.

aiortc offers audio and video in one BUNDLE; the call's media is built
from that offer exactly as for a real call (CallMedia), and the SIP side
answers with its own payload type numbers. The SIP side echoes audio and
video, so aiortc decodes its own pictures after two trips through the
relay. Keyframe requests are checked both ways: the SIP side's PLI makes
aiortc's encoder send a keyframe, aiortc's PLI reaches the SIP side about
the stream it sends.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Generator

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task

from telebridge.calls.call_media import CallMedia
from telebridge.media.dtls import DtlsCertificate
from telebridge.media.relay import MediaBridge, PortPool
from telebridge.media.rtcp_feedback import build_pli, keyframe_requests
from telebridge.media.srtp import SdesCrypto, SrtpSession, new_crypto, parse_crypto
from telebridge.media.udp_sockets import UdpSocketSet
from telebridge.sdp import parse_sdp
from tests.e2e.harness import free_media_ports, require_program
from tests.e2e.peer_process import AIORTC_PEER, CHROMIUM_PEER, LinePeer, start_peer

pytestmark = pytest.mark.e2e

VIDEO_PEER = AIORTC_PEER.with_name("aiortc_video_peer.py")
SIP_VIDEO_PT, SIP_AUDIO_PT = 125, 124  # not the browser's numbers: the relay must map them
PLI_AT, SECONDS = 3.5, 6.0
SIP_PLI_AT = 2.5


class Echo(protocol.DatagramProtocol):
    """One socket of the SIP side: sends back what it receives (decrypted and encrypted
    again with its own key, on an SDES-SRTP leg), and remembers when it came."""

    def __init__(self, srtp: SrtpSession | None = None) -> None:
        self.srtp = srtp
        self.packets: list[tuple[float, bytes, tuple[str, int]]] = []

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.srtp is not None:
            data = self.srtp.unprotect(data)
        self.packets.append((time.monotonic(), data, addr))
        self.transport.write(self.srtp.protect(data) if self.srtp else data, addr)  # type: ignore[union-attr]


class Recorder(protocol.DatagramProtocol):
    """The SIP side's video RTCP socket: keeps what arrives, and sends its keyframe request."""

    def __init__(self, srtp: SrtpSession | None = None) -> None:
        self.srtp = srtp
        self.packets: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(self.srtp.unprotect_rtcp(data) if self.srtp else data)

    def ask_keyframe(self, of_ssrc: int, port: int) -> None:
        pli = build_pli(0x5EED, of_ssrc)
        self.transport.write(self.srtp.protect_rtcp(pli) if self.srtp else pli, ("127.0.0.1", port))  # type: ignore[union-attr]


class SipSide:
    """The SIP side of a video call: audio and video echoes side by side, and the video's RTCP."""

    def __init__(self) -> None:
        self.audio, self.video, self.video_rtcp = Echo(), Echo(), Recorder()
        self.audio_port = free_media_ports(4)
        self.video_port = self.audio_port + 2
        self._listening = [
            reactor.listenUDP(port, echo, interface="127.0.0.1")  # type: ignore[attr-defined]
            for port, echo in ((self.audio_port, self.audio), (self.video_port, self.video), (self.video_port + 1, self.video_rtcp))
        ]

    @staticmethod
    def payload_types(echo: Echo) -> set[int]:
        return {data[1] & 0x7F for _, data, _ in echo.packets}

    @defer.inlineCallbacks
    def ask_keyframe(self, bridge: MediaBridge) -> Generator[Any, Any, tuple[int, float]]:
        """After SIP_PLI_AT s, a PLI about the video it receives, from its RTCP port (the relay
        checks the source); (the SSRC it asked about, when it asked)."""
        yield task.deferLater(reactor, SIP_PLI_AT, lambda: None)
        assert self.video.packets, "no video reached the SIP side"
        gateway_ssrc = struct.unpack_from("!I", self.video.packets[-1][1], 8)[0]
        self.video_rtcp.ask_keyframe(gateway_ssrc, bridge.video_port + 1)  # type: ignore[operator]
        return gateway_ssrc, time.monotonic()

    def stop(self) -> defer.Deferred[Any]:
        return defer.gatherResults([port.stopListening() for port in self._listening])


@defer.inlineCallbacks
def _hang_up(media: CallMedia, peer: LinePeer, sip: SipSide) -> Generator[Any, Any, None]:
    media.close("test over")
    yield peer.stop()
    yield sip.stop()


def is_keyframe(codec: str, payload: bytes) -> bool:
    """Whether an RTP payload starts a keyframe: VP8 (RFC 7741 §4) or H.264 (RFC 6184: IDR or SPS)."""
    if codec == "VP8":
        if len(payload) < 2 or not payload[0] & 0x10 or payload[0] & 0x07:
            return False  # not the start of partition 0
        offset = 1
        if payload[0] & 0x80:
            extensions = payload[1]
            offset = 2
            if extensions & 0x80:
                offset += 2 if len(payload) > offset and payload[offset] & 0x80 else 1
            offset += (1 if extensions & 0x40 else 0) + (1 if extensions & 0x30 else 0)
        return len(payload) > offset and not payload[offset] & 0x01
    nal_types = []
    kind = payload[0] & 0x1F if payload else 0
    if kind == 24:  # STAP-A: 16-bit sizes, then NAL units
        offset = 1
        while offset + 2 < len(payload):
            size = struct.unpack_from("!H", payload, offset)[0]
            nal_types.append(payload[offset + 2] & 0x1F)
            offset += 2 + size
    elif kind == 28 and len(payload) > 1 and payload[1] & 0x80:  # FU-A, first fragment
        nal_types.append(payload[1] & 0x1F)
    else:
        nal_types.append(kind)
    return bool({5, 7} & set(nal_types))


def _sip_answer(plain_offer: bytes, audio_port: int, video_port: int, codec: str, keys: tuple[SdesCrypto, SdesCrypto] | None = None) -> bytes:
    """The SIP side's answer at its own payload types; RTP/SAVP with ``keys`` (audio, video) when given."""
    offer = parse_sdp(plain_offer)
    proto = "RTP/SAVP" if keys else "RTP/AVP"
    audio_key, video_key = (f"a=crypto:{keys[0]}\r\n", f"a=crypto:{keys[1]}\r\n") if keys else ("", "")
    opus = next(c for c in offer.media[0].codecs() if c.name.lower() == "opus")
    video = next(c for c in offer.media[1].codecs() if c.name.upper() == codec)
    fmtp = f"a=fmtp:{SIP_VIDEO_PT} {video.fmtp}\r\n" if video.fmtp else ""
    return (
        "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {audio_port} {proto} {SIP_AUDIO_PT}\r\na=rtpmap:{SIP_AUDIO_PT} opus/{opus.clock_rate}/{opus.channels}\r\n{audio_key}"
        f"m=video {video_port} {proto} {SIP_VIDEO_PT}\r\na=rtpmap:{SIP_VIDEO_PT} {video.name}/90000\r\n{fmtp}{video_key}"
    ).encode()


def _sdes_sip_side(plain_offer: bytes, echoes: tuple[Echo, Echo, Recorder]) -> tuple[SdesCrypto, SdesCrypto]:
    """The SIP side's own SDES keys, one per stream, and its sockets keyed with them and the gateway's."""
    audio, video = parse_sdp(plain_offer).media
    ours = []
    for media, sockets in ((audio, echoes[:1]), (video, echoes[1:])):
        gateway_key = parse_crypto(media.attributes("crypto")[0] or "")
        key = new_crypto(gateway_key.tag, gateway_key.profile.name)
        for sock in sockets:
            sock.srtp = SrtpSession(key.profile, key.master, gateway_key.master)
        ours.append(key)
    return ours[0], ours[1]


@pytest.mark.parametrize("codec, sip_srtp", [("VP8", "never"), ("H264", "never"), ("VP8", "always")], ids=["vp8", "h264", "vp8-sdes-srtp"])
@pytest_twisted.inlineCallbacks
def test_video_is_relayed_both_ways_and_keyframe_requests_cross(loopback_only: None, codec: str, sip_srtp: str) -> Generator[Any, Any, None]:
    sip = SipSide()
    pool, ended = PortPool(42600, 42700), []
    media = CallMedia(reactor, pool, UdpSocketSet(reactor), DtlsCertificate(), "127.0.0.1", on_end=ended.append, sip_srtp=sip_srtp)  # type: ignore[arg-type]
    peer = start_peer(VIDEO_PEER, codec)
    try:
        offer = yield peer.receive(timeout=30)
        plain_offer = media.offer_from_browser(offer["offer"].encode())
        keys = _sdes_sip_side(plain_offer, (sip.audio, sip.video, sip.video_rtcp)) if sip_srtp == "always" else None
        answer = media.answer_from_sip(_sip_answer(plain_offer, sip.audio_port, sip.video_port, codec, keys))
        media.answered()
        bridge = media.bridge
        assert bridge is not None and bridge.video_plain is not None and bridge.webrtc.video is not None
        assert int(parse_sdp(answer).media[1].formats[0]) != SIP_VIDEO_PT
        peer.send({"answer": answer.decode(), "seconds": SECONDS, "pli_at": PLI_AT})
        gateway_ssrc, asked_at = yield sip.ask_keyframe(bridge)
        result = yield peer.receive(timeout=40)
        assert result["connection"] == "connected", result

        # Browser -> SIP: the video, decrypted, with the SIP side's payload type, from the video port only.
        video = sip.video.packets
        assert len(video) > 50, (len(video), bridge.webrtc.video.packets_in)
        assert sip.payload_types(sip.video) == {SIP_VIDEO_PT}
        assert {addr for _, _, addr in video} == {("127.0.0.1", bridge.video_port)}
        assert {struct.unpack_from("!I", data, 8)[0] for _, data, _ in video} == {bridge.video_plain.outgoing.rewriter.ssrc}
        # Audio went its own way: no video packet on the audio leg or in its statistics.
        assert sip.payload_types(sip.audio) == {SIP_AUDIO_PT}
        assert bridge.webrtc.rtcp.receive_stats.received <= len(sip.audio.packets) + 5
        assert bridge.webrtc.video.packets_in >= len(video)
        # SIP -> browser: aiortc decoded the echoed pictures (its own, at its size) and heard its tone.
        assert result["video_frames"] > 30 and result["video_size"] == [320, 240], result
        assert result["frames"] > 100 and result["rms"] > 500, result

        # SIP side's PLI -> aiortc's encoder was asked once, and a keyframe followed.
        assert result["keyframe_requests"] == 1, result
        after = [data[12:] for at, data, _ in video if at > asked_at]
        assert any(is_keyframe(codec, payload) for payload in after), f"no {codec} keyframe after the PLI"
        assert bridge.keyframes is not None and bridge.keyframes.to_browser == 1

        # aiortc's PLI -> the SIP side, about the stream it sends (here: the echo of ours).
        requests = [r for data in sip.video_rtcp.packets for r in keyframe_requests(data)]
        assert result["pli_sent_for"] is not None
        assert [(r.kind, r.media) for r in requests] == [("pli", gateway_ssrc)], requests
        assert bridge.keyframes.to_sip == 1
    finally:
        yield _hang_up(media, peer, sip)
    assert pool.in_use == 0 and ended == ["test over"]


@pytest_twisted.inlineCallbacks
def test_chromium_video_is_relayed_and_a_sip_pli_gets_a_keyframe(loopback_only: None) -> Generator[Any, Any, None]:
    """Debian's Chromium with its fake camera: its whole offer (RTX, RED, FEC, transport-cc and
    all) makes a VP8 call; its echoed pictures come back and decode, and the SIP side's PLI
    reaches its encoder."""
    require_program("chromium")
    sip = SipSide()
    pool, ended = PortPool(42800, 42900), []
    media = CallMedia(reactor, pool, UdpSocketSet(reactor), DtlsCertificate(), "127.0.0.1", on_end=ended.append)  # type: ignore[arg-type]
    peer = start_peer(CHROMIUM_PEER, "video")
    try:
        offer = yield peer.receive(timeout=60)
        plain_offer = media.offer_from_browser(offer["offer"].encode())
        answer = media.answer_from_sip(_sip_answer(plain_offer, sip.audio_port, sip.video_port, "VP8"))
        media.answered()
        assert media.bridge is not None and media.bridge.video_port is not None
        peer.send({"answer": answer.decode(), "seconds": 5})
        yield sip.ask_keyframe(media.bridge)
        result = yield peer.receive(timeout=60)
        assert result["connection"] == "connected", result
        assert sip.payload_types(sip.video) == {SIP_VIDEO_PT} and sip.payload_types(sip.audio) == {SIP_AUDIO_PT}
        video_in, video_out = result["video_in"], result["video_out"]
        assert video_in is not None and video_in["framesDecoded"] > 30 and video_in["frameWidth"] == 320, result
        assert video_out is not None and video_out["pliCount"] >= 1, video_out
        assert result["inbound"]["audioLevel"] > 0, result
    finally:
        yield _hang_up(media, peer, sip)
    assert pool.in_use == 0 and ended == ["test over"]


def _sip_offer(audio_port: int, video_port: int) -> bytes:
    """A SIP video phone's offer: PCMU and telephone-event, then H.263 (not relayed) and VP8,
    numbered like the telephone-event (plain m-lines may share numbers, a BUNDLE's may not)."""
    return (
        "v=0\r\no=- 8 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {audio_port} RTP/AVP 0 {SIP_VIDEO_PT}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{SIP_VIDEO_PT} telephone-event/8000\r\n"
        f"m=video {video_port} RTP/AVP 34 {SIP_VIDEO_PT}\r\na=rtpmap:34 H263/90000\r\na=rtpmap:{SIP_VIDEO_PT} VP8/90000\r\n"
    ).encode()


@pytest_twisted.inlineCallbacks
def test_a_sip_video_offer_reaches_the_browser_and_video_flows_both_ways(loopback_only: None) -> Generator[Any, Any, None]:
    """A call the SIP side starts: its offer's VP8 (not its H.263) is offered to aiortc under
    a number of its own, and aiortc answers; the pictures aiortc sends reach the SIP side at
    the SIP side's number and come back decoded, and the SIP side's PLI reaches aiortc's encoder."""
    sip = SipSide()
    pool, ended = PortPool(45000, 45100), []
    media = CallMedia(reactor, pool, UdpSocketSet(reactor), DtlsCertificate(), "127.0.0.1", on_end=ended.append)  # type: ignore[arg-type]
    peer = start_peer(VIDEO_PEER, "VP8", "answer")
    try:
        browser_offer = media.offer_from_sip(_sip_offer(sip.audio_port, sip.video_port))
        video_formats = parse_sdp(browser_offer).media[1].formats
        assert len(video_formats) == 1 and video_formats != [str(SIP_VIDEO_PT)]  # VP8 only, moved off the audio's number
        peer.send({"offer": browser_offer.decode(), "seconds": SECONDS, "pli_at": PLI_AT})
        answer = yield peer.receive(timeout=30)
        plain_answer = parse_sdp(media.answer_from_browser(answer["answer"].encode()))
        media.answered()
        bridge = media.bridge
        assert bridge is not None and bridge.video_port is not None
        assert plain_answer.media[1].port == bridge.video_port and plain_answer.media[1].formats == [str(SIP_VIDEO_PT)]
        yield sip.ask_keyframe(bridge)
        result = yield peer.receive(timeout=40)
        assert result["connection"] == "connected", result
        assert sip.payload_types(sip.video) == {SIP_VIDEO_PT} and sip.payload_types(sip.audio) == {0}
        assert result["video_frames"] > 30 and result["video_size"] == [320, 240], result
        assert result["frames"] > 100 and result["rms"] > 500, result
        assert result["keyframe_requests"] == 1, result
    finally:
        yield _hang_up(media, peer, sip)
    assert pool.in_use == 0 and ended == ["test over"]
