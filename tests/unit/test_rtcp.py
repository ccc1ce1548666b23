"""RTCP: reports built and read back, RFC 3550 Appendix A statistics, RTT."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.media.rtcp import (
    RR,
    SR,
    ReceiveStats,
    RtcpError,
    build_report,
    ntp_middle,
    parse_compound,
    round_trip,
)


def test_report_round_trip_with_a_block() -> None:
    """RFC 3550 §6.4.1: SR with sender info and one reception report."""
    stats = ReceiveStats(8000)
    for seq in (1, 2, 3, 5, 6):  # seq 4 is lost
        stats.update(seq, seq * 160, ssrc=77, now=seq * 0.02)
    packet = build_report(ssrc=99, now=1000.0, rtp_timestamp=12345, packets=50, octets=8000, block=stats.report_block(1000.0))
    [report] = parse_compound(packet)
    assert (report.packet_type, report.ssrc) == (SR, 99)
    [block] = report.blocks
    assert block.ssrc == 77 and block.cumulative_lost == 1 and block.highest_seq == 6
    assert block.fraction_lost == (1 << 8) // 6


def test_sequence_wrap_counts_cycles() -> None:
    """RFC 3550 A.1: 65535 -> 0 is a new cycle, not a loss of 65535 packets."""
    stats = ReceiveStats(8000)
    for seq in (65533, 65534, 65535, 0, 1):
        stats.update(seq, 0, 5, 0.0)
    assert stats.expected == 5 and stats.lost == 0 and stats.cycles == 1 << 16


def test_jitter_grows_with_uneven_arrival() -> None:
    """RFC 3550 A.8: steady arrival gives ~0 jitter; uneven arrival raises it."""
    steady, uneven = ReceiveStats(8000), ReceiveStats(8000)
    for i in range(50):
        steady.update(i, i * 160, 1, i * 0.02)
        uneven.update(i, i * 160, 1, i * 0.02 + (0.01 if i % 2 else 0))
    assert steady.jitter < 1 and uneven.jitter > 30


def test_round_trip_from_lsr_and_dlsr() -> None:
    """RFC 3550 §6.4.1: RTT = arrival - LSR - DLSR."""
    ours = ReceiveStats(8000)
    ours.sender_report_received(ntp_middle(100.0), 100.0)
    ours.update(1, 0, 3, 100.0)
    block_bytes = ours.report_block(100.5)  # the peer held our SR 0.5 s
    [report] = parse_compound(build_report(1, 100.5, 0, 0, 0, block_bytes))
    rtt = round_trip(report.blocks[0], 100.58)
    assert rtt is not None and abs(rtt - 0.08) < 0.001


def test_receiver_report_parses() -> None:
    """An RR with no blocks, as a receive-only peer sends."""
    rr = struct.pack("!BBHI", 0x80, RR, 1, 42)
    assert parse_compound(rr)[0].packet_type == RR


@pytest.mark.parametrize("data", [b"\x80\xc8", b"\x40\xc8\x00\x01\x00\x00\x00\x00", b"\x80\xc8\x00\x09" + b"\x00" * 8, b"\x81\xc9\x00\x01" + b"\x00" * 4])
def test_malformed_rtcp_raises_rtcp_error(data: bytes) -> None:
    """Truncated or wrong-version packets are one typed error."""
    with pytest.raises(RtcpError):
        parse_compound(data)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_parse_or_raise_rtcp_error(data: bytes) -> None:
    """Total parser."""
    try:
        parse_compound(data)
    except RtcpError:
        pass
