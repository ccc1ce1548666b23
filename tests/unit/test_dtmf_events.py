"""RFC 4733 telephone-event packets made from digits."""

from __future__ import annotations

import struct

from telebridge.media.dtmf_events import END_REPEATS, EventSender, EventReader


def fields(packet: bytearray) -> tuple[bool, int, int, int, int, bool, int]:
    """(marker, pt, seq, ts, event, end, duration)."""
    _, mpt, seq, ts, _ = struct.unpack_from("!BBHII", packet)
    event, flags, duration = struct.unpack_from("!BBH", packet, 12)
    return bool(mpt & 0x80), mpt & 0x7F, seq, ts, event, bool(flags & 0x80), duration


def play(sender: EventSender, start: float, until: float) -> list[tuple[bool, int, int, int, int, bool, int]]:
    out, now = [], start
    while now <= until:
        out += [fields(p) for p in sender.due(now)]
        now = round(now + 0.005, 3)
    return out


def test_one_digit_is_one_timestamp_growing_durations_and_three_end_packets() -> None:
    """§2.5: marker on the first packet, the event's start timestamp on all, E bit thrice at the end."""
    sender = EventSender(payload_type=101, clock_rate=8000)
    assert sender.add("5", 100, 0.0)
    packets = play(sender, 0.0, 1.0)
    assert [p[0] for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p[1] for p in packets} == {101} and {p[4] for p in packets} == {5}
    assert len({p[3] for p in packets}) == 1
    assert [p[6] for p in packets] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [p[5] for p in packets] == [False] * 5 + [True] * END_REPEATS
    seqs = [p[2] for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    assert not sender.active and sender.next_time() is None


def test_digits_play_in_order_each_once_with_a_gap_and_later_timestamps() -> None:
    sender = EventSender(payload_type=126, clock_rate=48000)
    for digit in "1#*":
        assert sender.add(digit, 60, 0.0)
    assert not sender.add("x", 60, 0.0)
    packets = play(sender, 0.0, 2.0)
    starts = [p for p in packets if p[0]]
    assert [p[4] for p in starts] == [1, 11, 10]
    assert all(0 < (b[3] - a[3]) & 0xFFFFFFFF < 1 << 31 for a, b in zip(starts, starts[1:]))  # later, modulo 2^32
    ends = [(p[3], p[4]) for p in packets if p[5]]
    assert len(set(ends)) == 3  # one event per digit, each ended


def test_events_read_back_each_digit_once_on_its_first_end_packet() -> None:
    sender = EventSender(101, 8000)
    for digit in "1#":
        sender.add(digit, 100, 0.0)
    reader = EventReader(8000)
    digits = []
    t = 0.0
    while sender.next_time() is not None:
        for packet in sender.due(t):
            got = reader.read(bytes(packet[12:]), int.from_bytes(packet[4:8], "big"))
            if got is not None:
                digits.append(got)
        t += 0.01
    assert digits == [("1", 100), ("#", 100)]


def test_event_reader_is_total() -> None:
    reader = EventReader(48000)
    assert reader.read(b"", 0) is None
    assert reader.read(b"\x63\x80\x00\x10", 1) is None  # event 99 is no DTMF digit
    assert reader.read(b"\x01\x00\x00\x10", 2) is None  # not an end packet
