"""RFC 7983 demultiplexing and one continuous outgoing RTP stream."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.media.rtp import Kind, StreamRewriter, classify, header_fields


def rtp(seq: int, ts: int, ssrc: int, pt: int = 111, marker: bool = False, payload: bytes = b"\x00" * 20) -> bytearray:
    return bytearray(struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload)


@pytest.mark.parametrize(
    "data,kind",
    [
        (b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 12, Kind.STUN),
        (b"\x16\xfe\xfd" + b"\x00" * 10, Kind.DTLS),
        (bytes(rtp(1, 2, 3)), Kind.RTP),
        (b"\x80\xc8\x00\x06" + b"\x00" * 24, Kind.RTCP),  # SR, PT 200
        (b"\x81\xcd\x00\x02" + b"\x00" * 8, Kind.RTCP),  # PSFB (PLI), PT 205
        (b"\x40" + b"\x00" * 20, Kind.JUNK),  # TURN ChannelData range is not ours
        (b"", Kind.JUNK),
        (b"\x80\x00", Kind.JUNK),
    ],
)
def test_classify_by_first_byte(data: bytes, kind: Kind) -> None:
    """RFC 7983 §7 and RFC 5761 §4."""
    assert classify(data) is kind


def test_rewrite_gives_one_ssrc_and_continuous_numbers_across_a_source_switch() -> None:
    """Issue 3 §4 / INTEROP #4: after a new SSRC, seq goes on by one and ts by the time passed."""
    out = StreamRewriter(ssrc=0xAABBCCDD, clock_rate=48000, initial_seq=1000, initial_ts=5000)
    seen = []
    now = 0.0
    for i in range(5):  # early media from one source
        packet = rtp(40000 + i, 960 * i, ssrc=111)
        out.rewrite(packet, 111, now)
        seen.append(header_fields(packet))
        now += 0.02
    for i in range(5):  # the answer brings another source with unrelated numbers
        packet = rtp(7 + i, 123456 + 960 * i, ssrc=222)
        out.rewrite(packet, 111, now)
        seen.append(header_fields(packet))
        now += 0.02
    assert {s[3] for s in seen} == {0xAABBCCDD}
    assert [s[1] for s in seen] == list(range(1000, 1010))
    steps = [b[2] - a[2] for a, b in zip(seen, seen[1:])]
    assert steps == [960] * 9


def test_rewrite_maps_the_payload_type_and_keeps_the_marker() -> None:
    """PT mapping between legs (e.g. telephone-event 101 -> 126) keeps the M bit."""
    out = StreamRewriter(1, 8000, 0, 0)
    packet = rtp(1, 1, 9, pt=101, marker=True)
    out.rewrite(packet, 126, 0.0)
    pt, _, _, _, marker = header_fields(packet)
    assert (pt, marker) == (126, True)


def test_reordered_packet_keeps_its_place() -> None:
    """A late packet is rewritten consistently and does not move the stream back."""
    out = StreamRewriter(1, 8000, 100, 0)
    packets = [rtp(s, s * 160, 5) for s in (10, 12, 11, 13)]
    for p in packets:
        out.rewrite(p, 0, 0.0)
    assert [header_fields(p)[1] for p in packets] == [100, 102, 101, 103]


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 3)), min_size=1, max_size=50))
@settings(max_examples=200, deadline=None)
def test_rewrite_always_writes_our_ssrc(packets: list[tuple[int, int, int]]) -> None:
    """Whatever comes in, what goes out carries one SSRC and a valid header."""
    out = StreamRewriter(0x12345678, 48000, 0, 0)
    for i, (seq, ts, ssrc) in enumerate(packets):
        packet = rtp(seq, ts, ssrc)
        out.rewrite(packet, 111, i * 0.02)
        assert header_fields(packet)[3] == 0x12345678 and packet[0] == 0x80
