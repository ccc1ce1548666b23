"""Media legs take any datagram from anywhere without raising or leaking media."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.media.dtls import DtlsCertificate
from telebridge.media.ice import IceLiteAgent
from telebridge.media.legs import OutgoingStream, PlainLeg, WebrtcLeg

CERTIFICATE = DtlsCertificate()
addresses = st.tuples(st.sampled_from(["127.0.0.1", "127.0.0.2", "::1"]), st.integers(1, 65535))
first_bytes = st.sampled_from([0, 1, 20, 22, 63, 64, 127, 128, 0x80, 0x81, 0x90, 191, 192, 255])
datagrams = st.builds(lambda b, rest: bytes([b]) + rest, first_bytes, st.binary(max_size=200))


@given(st.lists(st.tuples(datagrams, addresses), max_size=30))
@settings(max_examples=200, deadline=None)
def test_webrtc_leg_survives_garbage_and_forwards_nothing_unchecked(packets: list[tuple[bytes, tuple[str, int]]]) -> None:
    """Without a valid ICE check nothing reaches the other leg, and nothing raises."""
    leg = WebrtcLeg(IceLiteAgent("gw", "gateway-password-0123456789"), CERTIFICATE, False, None, OutgoingStream.new(48000))
    forwarded: list[bytearray] = []
    leg.on_rtp = lambda packet, now: forwarded.append(packet)
    for i, (data, source) in enumerate(packets):
        leg.datagram_received(data, source, i * 0.01)
        leg.handle_timer(i * 0.01)
    assert forwarded == []


@given(st.lists(st.tuples(datagrams, addresses, st.booleans()), max_size=30))
@settings(max_examples=200, deadline=None)
def test_plain_leg_takes_media_only_from_its_peer(packets: list[tuple[bytes, tuple[str, int], bool]]) -> None:
    """Strict source (no RTP bleed): only the SDP address's packets are forwarded; garbage never raises."""
    peer = ("127.0.0.9", 30000)
    leg = PlainLeg(remote=peer, outgoing=OutgoingStream.new(8000), latch_window=0.0)
    leg.start(0.0)
    forwarded: list[bytearray] = []
    leg.on_rtp = lambda packet, now: forwarded.append(packet)
    for i, (data, source, rtcp) in enumerate(packets):
        leg.datagram_received(data, source, 1.0 + i * 0.01, rtcp_port=rtcp)
        leg.handle_timer(1.0 + i * 0.01)
    good = struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + bytes(160)
    leg.datagram_received(good, peer, 5.0)
    # The generated sources are never the peer: all of it was dropped, only ours went through.
    assert len(forwarded) == 1
    assert leg.stats.dropped_source == len(packets)
