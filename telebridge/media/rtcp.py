"""RTCP (RFC 3550 §6) for call-quality figures, sans-I/O.

Rules of operation:

* Each leg terminates RTCP: what the peer reports is read (its view of
  our stream: loss, jitter, and the round-trip time from LSR/DLSR), and the
  leg reports on its own with SR + RR under its own SSRC, so neither side
  ever sees the other side's SSRCs.
* :class:`ReceiveStats` is RFC 3550 Appendix A.1/A.3/A.8 (sequence
  tracking with wrap-around, expected vs received, interarrival jitter) in
  plain integer fields, updated once per RTP packet.
* Parsing is total: :class:`RtcpError`, never ``struct.error``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SR, RR = 200, 201
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970


class RtcpError(Exception):
    """An RTCP packet that cannot be read."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class Report:
    """An SR or RR: the sender's SSRC, its sender info (SR only) and report blocks."""

    packet_type: int
    ssrc: int
    ntp_middle: int | None
    blocks: tuple[ReportBlock, ...]


def parse_compound(data: bytes) -> list[Report]:
    """SR and RR reports in a compound packet; other packet types are skipped."""
    reports = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            raise RtcpError("truncated RTCP header")
        first, packet_type, length = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise RtcpError("not RTCP version 2")
        end = pos + 4 * (length + 1)
        if end > len(data):
            raise RtcpError("RTCP length runs past the packet")
        count = first & 0x1F
        if packet_type in (SR, RR):
            (ssrc,) = struct.unpack_from("!I", data, pos + 4)
            offset = pos + 8
            ntp_middle = None
            if packet_type == SR:
                if end - offset < 20:
                    raise RtcpError("SR too short")
                ntp_sec, ntp_frac = struct.unpack_from("!II", data, offset)
                ntp_middle = ((ntp_sec & 0xFFFF) << 16) | (ntp_frac >> 16)
                offset += 20
            if offset + 24 * count > end:
                raise RtcpError("report blocks run past the packet")
            blocks = []
            for _ in range(count):
                ssrc_b, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, offset)
                cumulative = lost_word & 0xFFFFFF
                if cumulative & 0x800000:
                    cumulative -= 0x1000000
                blocks.append(ReportBlock(ssrc_b, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
                offset += 24
            reports.append(Report(packet_type, ssrc, ntp_middle, tuple(blocks)))
        pos = end
    return reports


def ntp_middle(now: float) -> int:
    """The middle 32 bits of the NTP timestamp for ``now`` (RFC 3550 §4)."""
    ntp = now + NTP_EPOCH_OFFSET
    return (int(ntp) & 0xFFFF) << 16 | int((ntp % 1) * 65536)


def round_trip(block: ReportBlock, arrival: float) -> float | None:
    """RTT in seconds from a block's LSR/DLSR (RFC 3550 §6.4.1), if it has one."""
    if block.lsr == 0:
        return None
    rtt = (ntp_middle(arrival) - block.lsr - block.dlsr) & 0xFFFFFFFF
    return rtt / 65536 if rtt < 0x80000000 else None


@dataclass(slots=True)
class ReceiveStats:
    """RFC 3550 Appendix A receive statistics for one incoming stream."""

    clock_rate: int
    ssrc: int | None = None
    base_seq: int = 0
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    last_sr_middle: int = 0
    last_sr_arrival: float | None = None

    def update(self, seq: int, timestamp: int, ssrc: int, now: float) -> None:
        """One RTP packet arrived (A.1 sequence tracking, A.8 jitter)."""
        if ssrc != self.ssrc:
            self.ssrc, self.base_seq, self.max_seq, self.cycles, self.received = ssrc, seq, seq, 0, 0
            self.expected_prior = self.received_prior = 0
            self.last_transit = None
        delta = (seq - self.max_seq) & 0xFFFF
        if delta < 0x8000:
            if seq < self.max_seq:
                self.cycles += 1 << 16
            self.max_seq = seq
        self.received += 1
        transit = now * self.clock_rate - timestamp
        if self.last_transit is not None:
            d = abs(transit - self.last_transit)
            # Timestamps wrap; a jump of more than half the range is a wrap, not jitter.
            if d < 1 << 31:
                self.jitter += (d - self.jitter) / 16
        self.last_transit = transit

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1 if self.ssrc is not None else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative with duplicates."""
        return self.expected - self.received

    def sender_report_received(self, middle: int, now: float) -> None:
        """Remember the peer's SR for our LSR/DLSR."""
        self.last_sr_middle, self.last_sr_arrival = middle, now

    def report_block(self, now: float) -> bytes:
        """A reception report block for our RR (RFC 3550 §6.4.1); updates the interval counters."""
        expected = self.expected
        interval_expected = expected - self.expected_prior
        interval_received = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = interval_expected - interval_received
        fraction = 0 if interval_expected <= 0 or lost_interval <= 0 else (lost_interval << 8) // interval_expected
        lost = max(-0x800000, min(0x7FFFFF, self.lost)) & 0xFFFFFF
        dlsr = 0 if self.last_sr_arrival is None else int((now - self.last_sr_arrival) * 65536)
        return struct.pack(
            "!IIIIII",
            self.ssrc or 0,
            (min(fraction, 255) << 24) | lost,
            (self.cycles + self.max_seq) & 0xFFFFFFFF,
            int(self.jitter) & 0xFFFFFFFF,
            self.last_sr_middle,
            dlsr,
        )


@dataclass(slots=True)
class QualityFigures:
    """What the peer reports about the stream we send, for /metrics and call logs."""

    rtt: float | None = None
    remote_fraction_lost: int = 0
    remote_cumulative_lost: int = 0
    remote_jitter: int = 0
    reports_received: int = 0

    def absorb(self, report: Report, our_ssrc: int, now: float) -> None:
        """Take the block about our stream from a peer's SR/RR."""
        self.reports_received += 1
        for block in report.blocks:
            if block.ssrc == our_ssrc:
                self.remote_fraction_lost = block.fraction_lost
                self.remote_cumulative_lost = block.cumulative_lost
                self.remote_jitter = block.jitter
                rtt = round_trip(block, now)
                if rtt is not None:
                    self.rtt = rtt


def build_report(ssrc: int, now: float, rtp_timestamp: int, packets: int, octets: int, block: bytes | None) -> bytes:
    """Our SR (with one report block when we receive a stream), RFC 3550 §6.4.1."""
    ntp = now + NTP_EPOCH_OFFSET
    count = 1 if block else 0
    body = struct.pack("!IIIIII", ssrc, int(ntp) & 0xFFFFFFFF, int((ntp % 1) * 2**32), rtp_timestamp & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    body += block or b""
    header = struct.pack("!BBH", 0x80 | count, SR, (4 + len(body)) // 4 - 1)
    return header + body
