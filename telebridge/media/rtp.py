"""RTP/RTCP on the hot path: demultiplexing and stream rewriting, sans-I/O.

Rules of operation:

* :func:`classify` sorts a datagram by its first byte (RFC 7983 §7): STUN
  0-3, DTLS 20-63, RTP/RTCP 128-191 (RTCP when the second byte is a
  payload type 192-223, RFC 5761 §4); anything else is junk.
* :class:`StreamRewriter` makes whatever arrives (several SSRCs across
  early media, re-INVITEs, transfers) leave as one stream: one SSRC, a
  sequence number that goes up by one per packet, and a timestamp that
  goes on from where the last source stopped (janus PR #3640, asterisk
  #1535: jumps trip SRTP replay protection and jitter buffers).
* Everything works on a ``bytearray`` in place with ``struct`` at fixed
  offsets: no per-packet objects beyond the buffer the socket gave us.
"""

from __future__ import annotations

import enum
import struct

RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, timestamp, SSRC
_SEQ_TS_SSRC = struct.Struct("!HII")


class Kind(enum.IntEnum):
    """What a datagram on a bundled/muxed port is (RFC 7983)."""

    JUNK = 0
    STUN = 1
    DTLS = 2
    RTP = 3
    RTCP = 4


# The members as module names for the per-packet code: on Python 3.11 ``Kind.RTP``
# goes through the enum's metaclass and costs as much as ten global look-ups.
JUNK, STUN, DTLS, RTP, RTCP = Kind.JUNK, Kind.STUN, Kind.DTLS, Kind.RTP, Kind.RTCP


def classify(data: bytes | bytearray) -> Kind:
    """RFC 7983 §7 demultiplexing by first byte, RFC 5761 §4 for RTP vs RTCP."""
    if not data:
        return JUNK
    first = data[0]
    if 128 <= first <= 191:  # media first: nearly every datagram is
        if len(data) >= 12:
            return RTCP if 192 <= data[1] <= 223 else RTP
        return RTCP if len(data) >= 8 and 192 <= data[1] <= 223 else JUNK
    if first < 4:
        return STUN
    if 20 <= first <= 63:
        return DTLS
    return JUNK


def header_fields(packet: bytes | bytearray) -> tuple[int, int, int, int, bool]:
    """(payload type, sequence, timestamp, SSRC, marker) of an RTP packet of >= 12 bytes."""
    _, mpt, seq, ts, ssrc = RTP_HEADER.unpack_from(packet)
    return mpt & 0x7F, seq, ts, ssrc, bool(mpt & 0x80)


class StreamRewriter:
    """One outgoing RTP stream built from whatever sources come in.

    ``clock_rate`` turns wall time into timestamp units, so that after a
    source switch (a new SSRC) the timestamp moves on by the time that
    really passed and the receiver's playout stays smooth.
    """

    __slots__ = ("ssrc", "clock_rate", "_source", "_seq_offset", "_ts_offset", "_last_seq", "_last_ts", "_last_time", "packets")

    def __init__(self, ssrc: int, clock_rate: int, initial_seq: int, initial_ts: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self._source: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq = (initial_seq - 1) & 0xFFFF
        self._last_ts = initial_ts
        self._last_time: float | None = None
        self.packets = 0

    @property
    def last_timestamp(self) -> int:
        """The timestamp of the newest packet sent (for our Sender Reports)."""
        return self._last_ts

    def rewrite(self, packet: bytearray, payload_type: int, now: float) -> None:
        """Rewrite one RTP packet in place: our SSRC, continuous seq/ts, ``payload_type``."""
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(packet, 2)
        if ssrc != self._source:
            # A new source: continue our numbering one packet on, and the
            # timestamp by the wall time since our last packet.
            self._source = ssrc
            self._seq_offset = (self._last_seq + 1 - seq) & 0xFFFF
            gap = 0 if self._last_time is None else int((now - self._last_time) * self.clock_rate)
            self._ts_offset = (self._last_ts + max(gap, 1) - ts) & 0xFFFFFFFF
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        packet[1] = (packet[1] & 0x80) | (payload_type & 0x7F)
        _SEQ_TS_SSRC.pack_into(packet, 2, out_seq, out_ts, self.ssrc)
        # Reordered packets must not drag the "last" marks backwards.
        if ((out_seq - self._last_seq) & 0xFFFF) < 0x8000:
            self._last_seq = out_seq
            self._last_ts = out_ts
            self._last_time = now
        self.packets += 1
