"""The transcoding path's jitter buffer: order, pace, concealment, adaptation, bounds."""

from __future__ import annotations

import random

from telebridge.media.jitter_buffer import MAX_CONCEALED, JitterBuffer

CLOCK = 8000
FRAME = 160  # 20 ms at 8 kHz


def _voice(frames: list) -> list[bytes | None]:
    """Payloads, without the concealment that follows the end of a stream."""
    payloads = [f.payload for f in frames]
    while payloads and payloads[-1] is None:
        payloads.pop()
    return payloads


def _played(buffer: JitterBuffer, until: float, step: float = 0.005, start: float = 0.0) -> list[bytes | None]:
    out = []
    t = start
    while t <= until:
        out += [f.payload for f in buffer.pop(t)]
        t += step
    return out


def test_a_steady_stream_plays_every_frame_in_order_after_the_target_delay() -> None:
    buffer = JitterBuffer(CLOCK, min_delay=0.04)
    for n in range(10):
        buffer.put(n, n * FRAME, bytes([n]), n * 0.02)
    assert buffer.next_time() == 0.04
    assert buffer.pop(0.039) == []
    assert [f.payload for f in buffer.pop(0.04 + 9 * 0.02)] == [bytes([n]) for n in range(10)]
    assert buffer.stats.played == 10 and buffer.stats.concealed == 0


def test_reordered_packets_come_out_in_sequence() -> None:
    buffer = JitterBuffer(CLOCK)
    arrival = [0, 2, 1, 4, 3, 5]
    for i, n in enumerate(arrival):
        buffer.put(n, n * FRAME, bytes([n]), i * 0.02)
    assert _voice(buffer.pop(1.0)) == [bytes([n]) for n in range(6)]


def test_a_lost_packet_is_handed_out_as_a_loss_with_the_one_after_it_for_fec() -> None:
    buffer = JitterBuffer(CLOCK)
    for n in (0, 1, 3, 4):
        buffer.put(n, n * FRAME, bytes([n]), n * 0.02)
    frames = buffer.pop(0.04 + 4 * 0.02)
    assert [f.payload for f in frames] == [b"\x00", b"\x01", None, b"\x03", b"\x04"]
    assert frames[2].following == b"\x03"
    assert buffer.stats.concealed == 1


def test_sequence_and_timestamp_wrap_around() -> None:
    buffer = JitterBuffer(CLOCK)
    first_ts = 0xFFFFFFFF - FRAME
    for i in range(6):
        buffer.put((0xFFFD + i) & 0xFFFF, (first_ts + i * FRAME) & 0xFFFFFFFF, bytes([i]), i * 0.02)
    assert _voice(buffer.pop(1.0)) == [bytes([i]) for i in range(6)]


def test_a_pause_stops_concealment_and_the_next_packet_restarts_playout() -> None:
    buffer = JitterBuffer(CLOCK)
    for n in range(3):
        buffer.put(n, n * FRAME, b"v", n * 0.02)
    frames = _played(buffer, 2.0)
    assert frames.count(None) == MAX_CONCEALED
    assert buffer.next_time() is None  # paused: no timer
    # The peer comes back 5 s later (DTX, hold): playout starts again from it.
    buffer.put(250, 250 * FRAME, b"back", 5.0)
    assert buffer.next_time() == 5.0 + buffer.delay
    assert [f.payload for f in buffer.pop(5.0 + buffer.delay)] == [b"back"]


def test_a_late_packet_is_dropped_and_makes_the_buffer_deeper() -> None:
    buffer = JitterBuffer(CLOCK, min_delay=0.04, max_delay=0.1)
    buffer.put(0, 0, b"0", 0.0)
    buffer.put(2, 2 * FRAME, b"2", 0.04)
    assert [f.payload for f in buffer.pop(0.081)] == [b"0", None, b"2"]
    assert not buffer.put(1, FRAME, b"1", 0.09)
    assert buffer.stats.late == 1 and buffer.delay > 0.04
    for _ in range(10):
        buffer._later()
    assert buffer.delay <= 0.1 + 1e-9


def test_jitter_of_60_ms_is_absorbed_after_the_buffer_adapts() -> None:
    rng = random.Random(7)
    buffer = JitterBuffer(CLOCK, min_delay=0.02, max_delay=0.2)
    # The first packet is on time, so the others come up to 60 ms later than it.
    arrivals = sorted((n * 0.02 + (rng.uniform(0, 0.06) if n else 0.0), n) for n in range(500))
    concealed_early = None
    t = 0.0
    for at, n in arrivals:
        while t < at:
            buffer.pop(t)
            t += 0.005
        buffer.put(n, n * FRAME, b"x", at)
        if n == 250 and concealed_early is None:
            concealed_early = buffer.stats.concealed
    buffer.pop(t + 1)
    assert buffer.delay >= 0.06
    # Once adapted, the second half of the call loses nothing (the stream's
    # end is concealed MAX_CONCEALED times before the buffer pauses).
    assert buffer.stats.concealed - (concealed_early or 0) == MAX_CONCEALED, buffer.stats


def test_a_deep_buffer_shrinks_back_when_the_network_calms_down() -> None:
    buffer = JitterBuffer(CLOCK, min_delay=0.02, max_delay=0.2)
    buffer.delay = 0.12
    t = 0.0
    for n in range(600):  # 12 s of packets arriving on time
        buffer.put(n, n * FRAME, b"x", n * 0.02)
        while t <= n * 0.02:
            buffer.pop(t)
            t += 0.005
    assert buffer.delay < 0.12


def test_the_buffer_is_bounded_and_a_timestamp_jump_restarts_it() -> None:
    buffer = JitterBuffer(CLOCK, capacity=10, max_delay=0.2)
    accepted = sum(buffer.put(n, n * FRAME, b"x", 0.0) for n in range(15))
    assert accepted == 10 and buffer.stats.overflow == 5
    # A new source far ahead in time: playout restarts from it rather than waiting.
    buffer.put(31, 31 * FRAME + CLOCK * 3600, b"new", 0.1)
    assert buffer.stats.restarts == 1
    assert [f.payload for f in buffer.pop(0.1 + buffer.delay)] == [b"new"]


def test_duplicates_are_played_once() -> None:
    buffer = JitterBuffer(CLOCK)
    for n in (0, 1, 1, 2):
        buffer.put(n, n * FRAME, bytes([n]), 0.0)
    assert _voice(buffer.pop(1.0)) == [b"\x00", b"\x01", b"\x02"]
    assert buffer.stats.duplicate == 1


def test_longer_frames_play_at_their_own_pace() -> None:
    buffer = JitterBuffer(CLOCK)
    for n in range(3):
        buffer.put(n, n * 480, bytes([n]), n * 0.06)  # 60 ms frames
    assert [f.payload for f in buffer.pop(0.04 + 0.06)] == [b"\x00", b"\x01"]
    assert buffer.next_time() is not None and abs(buffer.next_time() - (0.04 + 0.12)) < 1e-9


def test_a_stream_whose_first_packet_came_early_is_waited_for_not_concealed() -> None:
    """The playout is anchored on the first packet; when the next ones come 50 ms later
    than it implied (more than the 40 ms target), the buffer waits (a little more delay) instead of making up a
    frame in the first second (an audible click)."""
    buffer = JitterBuffer(CLOCK, min_delay=0.04, max_delay=0.2)
    buffer.put(0, 0, b"0", 0.0)
    t = 0.0
    for n in range(1, 50):
        at = n * 0.02 + 0.05
        while t < at:
            buffer.pop(t)
            t += 0.005
        buffer.put(n, n * FRAME, bytes([n]), at)
    assert buffer.stats.concealed == 0 and buffer.stats.late == 0, buffer.stats
    assert buffer.stats.played >= 45 and abs(buffer.delay - 0.06) < 1e-9


def test_settling_waits_are_few_and_later_losses_are_concealed_as_ever() -> None:
    buffer = JitterBuffer(CLOCK, min_delay=0.04, max_delay=0.2)
    for n in range(3):
        buffer.put(n, n * FRAME, b"v", n * 0.02)
    frames = _played(buffer, 2.0)
    # A stream that stops in its first second: two frames waited for, then concealment and a pause.
    assert frames.count(None) == MAX_CONCEALED and abs(buffer.delay - 0.08) < 1e-9
