"""PLI and FIR: read from a compound packet, written anew for the other leg."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from telebridge.media.rtcp import build_report
from telebridge.media.rtcp_feedback import KeyframeRelay, KeyframeRequest, build_fir, build_pli, keyframe_requests


def test_a_pli_inside_a_compound_packet_is_found() -> None:
    compound = build_report(0x1111, 100.0, 1234, 10, 1000, None) + build_pli(0xAAAA, 0xBBBB)
    assert keyframe_requests(compound) == [KeyframeRequest("pli", 0xAAAA, 0xBBBB)]


def test_a_fir_with_two_entries_gives_two_requests() -> None:
    fir = struct.pack("!BBHII", 0x84, 206, 6, 0xAAAA, 0) + struct.pack("!IB3xIB3x", 0xB1, 7, 0xB2, 9)
    assert keyframe_requests(fir) == [KeyframeRequest("fir", 0xAAAA, 0xB1, 7), KeyframeRequest("fir", 0xAAAA, 0xB2, 9)]


def test_what_we_build_reads_back() -> None:
    assert keyframe_requests(build_pli(1, 2)) == [KeyframeRequest("pli", 1, 2)]
    assert keyframe_requests(build_fir(1, 2, 3)) == [KeyframeRequest("fir", 1, 2, 3)]


def test_the_relay_rewrites_ssrcs_and_passes_each_fir_once() -> None:
    relay = KeyframeRelay()
    assert keyframe_requests(relay.translate(KeyframeRequest("pli", 5, 6), 10, 20) or b"") == [KeyframeRequest("pli", 10, 20)]
    first = relay.translate(KeyframeRequest("fir", 5, 6, 42), 10, 20)
    assert first is not None and keyframe_requests(first) == [KeyframeRequest("fir", 10, 20, 1)]
    assert relay.translate(KeyframeRequest("fir", 5, 6, 42), 10, 20) is None  # a repeat
    again = relay.translate(KeyframeRequest("fir", 5, 6, 43), 10, 20)
    assert again is not None and keyframe_requests(again)[0].fir_seq == 2


@given(st.binary(max_size=200))
def test_reading_is_total(data: bytes) -> None:
    for request in keyframe_requests(data):
        assert request.kind in ("pli", "fir")
