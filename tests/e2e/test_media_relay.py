"""The relay against real WebRTC peers: aiortc (an independent stack) and headless Chromium.

aiortc offers Opus; the relay answers as ICE-lite with passive DTLS; the SIP
side is a plain RTP endpoint on loopback that echoes what it gets. Both
directions are checked by what really arrived.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Generator

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor, task

from telebridge.media.dtls import DtlsCertificate
from telebridge.media.ice import IceLiteAgent, new_credentials
from telebridge.media.legs import OutgoingStream, PlainLeg, WebrtcLeg
from telebridge.media.relay import MediaBridge, PortPool
from telebridge.media.udp_sockets import UdpSocketSet
from telebridge.sdp import fingerprint, ice_credentials, parse_sdp
from telebridge.sdp_translation import WebrtcTransport, webrtc_answer_from_plain
from tests.e2e.harness import require_program
from tests.e2e.peer_process import AIORTC_PEER as PEER
from tests.e2e.peer_process import start_peer

pytestmark = pytest.mark.e2e


class EchoPbx(protocol.DatagramProtocol):
    """A plain RTP endpoint (the SIP side) that sends back what it receives."""

    def __init__(self) -> None:
        self.packets: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((data, addr))
        self.transport.write(data, addr)  # type: ignore[union-attr]


def _bridge_for(offer_sdp: str, pbx_port: int, pool: PortPool, ended: list[str], tamper_fingerprint: bool = False) -> tuple[MediaBridge, str, int]:
    offer = parse_sdp(offer_sdp)
    audio = offer.media[0]
    ufrag, pwd = new_credentials()
    ice = IceLiteAgent(ufrag, pwd)
    credentials = ice_credentials(offer, audio)
    assert credentials is not None
    ice.set_remote_credentials(*credentials)
    remote_fingerprint = fingerprint(offer, audio)
    if tamper_fingerprint:
        remote_fingerprint = "00:" * 31 + "00"
    certificate = DtlsCertificate()
    opus = next(c for c in audio.codecs() if c.name.lower() == "opus")
    webrtc = WebrtcLeg(ice, certificate, dtls_client=False, remote_fingerprint=remote_fingerprint, outgoing=OutgoingStream.new(48000))
    plain = PlainLeg(remote=("127.0.0.1", pbx_port), outgoing=OutgoingStream.new(48000))
    bridge = MediaBridge(reactor, pool, UdpSocketSet(reactor), webrtc, plain, on_end=ended.append)  # type: ignore[arg-type]
    pbx_answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        f"m=audio {pbx_port} RTP/AVP {opus.payload_type}\r\nc=IN IP4 127.0.0.1\r\n"
        f"a=rtpmap:{opus.payload_type} opus/48000/2\r\n"
    )
    transport = WebrtcTransport(ufrag, pwd, certificate.fingerprint, "127.0.0.1", bridge.webrtc_port)
    return bridge, str(webrtc_answer_from_plain(offer, pbx_answer, transport, 1)), opus.payload_type


@pytest_twisted.inlineCallbacks
def test_aiortc_audio_flows_both_ways_through_the_relay(loopback_only: None) -> Generator[Any, Any, None]:
    """Issue 3: ICE + DTLS with aiortc; the plain side gets decrypted Opus; the echo reaches aiortc."""
    pbx = EchoPbx()
    pbx_socket = reactor.listenUDP(0, pbx, interface="127.0.0.1")  # type: ignore[attr-defined]
    pool, ended = PortPool(42000, 42100), []
    peer = start_peer()
    try:
        offer = yield peer.receive()
        bridge, answer, opus_pt = _bridge_for(offer["offer"], pbx_socket.getHost().port, pool, ended)
        peer.send({"answer": answer, "seconds": 4})
        result = yield peer.receive(timeout=30)
        assert result["connection"] == "connected", result
        # SIP side: plain RTP, the negotiated payload type, from the relay's plain port only.
        assert len(pbx.packets) > 100, (len(pbx.packets), bridge.webrtc.stats, result)
        payload_types = {data[1] & 0x7F for data, _ in pbx.packets}
        assert payload_types == {opus_pt}
        assert {addr for _, addr in pbx.packets} == {("127.0.0.1", bridge.plain_port)}
        assert {struct.unpack_from("!I", data, 8)[0] for data, _ in pbx.packets} == {bridge.plain.outgoing.rewriter.ssrc}
        # Browser side: the echoed tone came back through SRTP and decoded with energy.
        assert result["frames"] > 100 and result["rms"] > 500, result
        # RTCP is terminated per leg: aiortc's reports were read, and our own
        # receive statistics saw the whole stream (loopback loses nothing).
        webrtc_rtcp = bridge.webrtc.rtcp
        assert webrtc_rtcp.quality.reports_received > 0
        assert webrtc_rtcp.receive_stats.received > 100 and webrtc_rtcp.receive_stats.lost == 0
        # A third address on the plain side is dropped and counted (no RTP bleed).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            for seq in range(5):
                intruder.sendto(struct.pack("!BBHII", 0x80, opus_pt, seq, 0, 99) + b"x" * 40, ("127.0.0.1", bridge.plain_port))
        yield task.deferLater(reactor, 0.3, lambda: None)
        assert bridge.plain.stats.dropped_source == 5
        bridge.close("test over")
        assert pool.in_use == 0 and ended == ["test over"]
    finally:
        yield peer.ended
        yield pbx_socket.stopListening()


@pytest_twisted.inlineCallbacks
def test_peer_whose_certificate_does_not_match_its_fingerprint_fails(loopback_only: None) -> Generator[Any, Any, None]:
    """RFC 5763 §5: the DTLS certificate must be the one in the SDP, or the leg ends and no media flows."""
    pbx = EchoPbx()
    pbx_socket = reactor.listenUDP(0, pbx, interface="127.0.0.1")  # type: ignore[attr-defined]
    pool, ended = PortPool(42200, 42300), []
    peer = start_peer()
    try:
        offer = yield peer.receive()
        bridge, answer, _ = _bridge_for(offer["offer"], pbx_socket.getHost().port, pool, ended, tamper_fingerprint=True)
        peer.send({"answer": answer, "seconds": 3})
        yield peer.receive(timeout=30)
        assert pbx.packets == []
        assert ended and "fingerprint" in ended[0]
        assert pool.in_use == 0
    finally:
        yield peer.ended
        yield pbx_socket.stopListening()


@pytest_twisted.inlineCallbacks
def test_chromium_completes_ice_dtls_srtp_and_plays_audio_from_the_plain_side(loopback_only: None) -> Generator[Any, Any, None]:
    """Issue 3: Debian's headless Chromium with its fake microphone; the echo from the
    plain RTP side reaches it: getStats shows inbound audio with audioLevel > 0."""
    require_program("chromium")
    pbx = EchoPbx()
    pbx_socket = reactor.listenUDP(0, pbx, interface="127.0.0.1")  # type: ignore[attr-defined]
    pool, ended = PortPool(42400, 42500), []
    peer = start_peer(PEER.with_name("chromium_peer.py"))
    try:
        offer = yield peer.receive(timeout=60)
        bridge, answer, _ = _bridge_for(offer["offer"], pbx_socket.getHost().port, pool, ended)
        peer.send({"answer": answer, "seconds": 4})
        result = yield peer.receive(timeout=60)
        assert result["connection"] == "connected", result
        inbound = result["inbound"]
        assert inbound is not None and inbound["packetsReceived"] > 100, result
        assert inbound["audioLevel"] > 0, result
        assert len(pbx.packets) > 100
        bridge.close("test over")
        assert pool.in_use == 0
    finally:
        yield peer.ended
        yield pbx_socket.stopListening()
