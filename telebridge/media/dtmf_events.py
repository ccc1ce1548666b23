"""RFC 4733 telephone-events made from digits (a browser's SIP INFO), and read back, sans-I/O.

Rules of operation:

* One event at a time, queued in order: a digit's packets go out every
  ``PACKET_INTERVAL`` (the ptime of the voice stream) with the same RTP
  timestamp (the event's start) and a growing duration; the first has the
  marker bit (§2.5.1.2). When the duration is reached, the end packet
  (E bit) is sent three times, as §2.5.1.4 recommends for loss.
* A pause of ``INTER_DIGIT_GAP`` separates events, so the far side sees
  two presses of the same digit as two digits.
* The packets come out as a source of their own (their own SSRC,
  sequence and timestamp base); the leg's stream rewriter folds them into
  the one stream the far side sees, and the leg holds the relayed voice
  back while an event plays (§2.5.1.2 allows either; a mix of both would
  make the event's timestamp wander with the rewriter's source switches).
"""

from __future__ import annotations

import secrets
import struct
from collections import deque
from dataclasses import dataclass

from telebridge.media.rtp import StreamRewriter

# RFC 4733 §3.2: the event codes of DTMF.
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PACKET_INTERVAL = 0.02
INTER_DIGIT_GAP = 0.06
END_REPEATS = 3
VOLUME = 10  # -10 dBm0, a normal key press
MIN_DURATION_MS, MAX_DURATION_MS = 40, 5000
_EVENT = struct.Struct("!BBH")
_HEADER = struct.Struct("!BBHII")


DIGITS = {code: digit for digit, code in EVENT_CODES.items()}


def event_code(digit: str) -> int | None:
    """The RFC 4733 code of a DTMF digit, ``None`` for anything else."""
    return EVENT_CODES.get(digit.upper())


@dataclass
class _Event:
    code: int
    duration: int  # in timestamp units
    timestamp: int
    sent_units: int = 0
    ends_sent: int = 0


class EventSender:
    """Queued DTMF digits turned into telephone-event packets on a clock."""

    def __init__(self, payload_type: int, clock_rate: int) -> None:
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._queue: deque[_Event] = deque()
        self._next_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether an event is playing or queued (the voice is held back meanwhile)."""
        return bool(self._queue)

    def add(self, digit: str, duration_ms: int, now: float) -> bool:
        """Queue one digit; False for a character that is not a DTMF digit."""
        code = event_code(digit)
        if code is None:
            return False
        duration_ms = min(max(duration_ms, MIN_DURATION_MS), MAX_DURATION_MS)
        units = duration_ms * self.clock_rate // 1000
        self._queue.append(_Event(code, units, 0))
        if self._next_at is None:
            self._next_at = now
        return True

    def next_time(self) -> float | None:
        """When the next packet is due (``None`` with nothing queued)."""
        return self._next_at if self._queue else None

    def due(self, now: float) -> list[bytearray]:
        """The packets due by ``now`` (at most one per event step; the caller sends them)."""
        packets: list[bytearray] = []
        while self._queue and self._next_at is not None and self._next_at <= now:
            packets.append(self._step())
        if not self._queue:
            self._next_at = None
        return packets

    def _step(self) -> bytearray:
        event = self._queue[0]
        assert self._next_at is not None
        step = int(PACKET_INTERVAL * self.clock_rate)
        first = event.sent_units == 0 and event.ends_sent == 0
        if first:
            event.timestamp = self._timestamp
        if event.sent_units < event.duration:
            event.sent_units = min(event.sent_units + step, event.duration)
            packet = self._packet(event, end=False, marker=first)
            self._next_at += PACKET_INTERVAL
            return packet
        event.ends_sent += 1
        packet = self._packet(event, end=True, marker=False)
        if event.ends_sent < END_REPEATS:
            self._next_at += PACKET_INTERVAL
        else:
            self._queue.popleft()
            # The next event starts after the gap, at the timestamp that much later.
            self._timestamp = (event.timestamp + event.duration + int(INTER_DIGIT_GAP * self.clock_rate)) & 0xFFFFFFFF
            self._next_at += INTER_DIGIT_GAP
        return packet

    def _packet(self, event: _Event, end: bool, marker: bool) -> bytearray:
        self._seq = (self._seq + 1) & 0xFFFF
        packet = bytearray(_HEADER.size + _EVENT.size)
        _HEADER.pack_into(packet, 0, 0x80, (0x80 if marker else 0) | self.payload_type, self._seq, event.timestamp, self.ssrc)
        _EVENT.pack_into(packet, _HEADER.size, event.code, (0x80 if end else 0) | VOLUME, event.sent_units)
        return packet


class EventTrack:
    """The RFC 4733 events one leg plays into its outgoing stream (a sender made on first use)."""

    def __init__(self) -> None:
        self.sender: EventSender | None = None

    @property
    def active(self) -> bool:
        """Whether an event is playing or queued (the leg holds its voice back meanwhile)."""
        return self.sender is not None and self.sender.active

    def add(self, digit: str, duration_ms: int, payload_type: int, clock_rate: int, now: float) -> bool:
        """Queue one digit at this payload type and clock; False for a non-digit."""
        sender = self.sender
        if sender is None or (sender.payload_type, sender.clock_rate) != (payload_type, clock_rate):
            sender = self.sender = EventSender(payload_type, clock_rate)
        return sender.add(digit, duration_ms, now)

    def next_time(self) -> float | None:
        return self.sender.next_time() if self.sender is not None else None

    def due(self, now: float, rewriter: StreamRewriter) -> list[bytearray]:
        """The packets due by ``now``, already folded into the leg's stream by ``rewriter``."""
        if self.sender is None:
            return []
        packets = self.sender.due(now)
        for packet in packets:
            rewriter.rewrite(packet, self.sender.payload_type, now)
        return packets


class EventReader:
    """Turns a stream of telephone-event payloads back into digits, each once.

    A digit is reported on its event's first end packet (E bit) with the
    duration it gives; the two repeats that follow, and the growing
    packets before, carry the same RTP timestamp and are ignored.
    """

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._reported: deque[int] = deque(maxlen=8)

    def read(self, payload: bytes, timestamp: int) -> tuple[str, int] | None:
        """(digit, duration in ms) when this packet ends a new event, else None."""
        if len(payload) < _EVENT.size:
            return None
        code, flags, duration = _EVENT.unpack_from(payload)
        if not flags & 0x80 or timestamp in self._reported:
            return None
        digit = DIGITS.get(code)
        if digit is None:
            return None
        self._reported.append(timestamp)
        return digit, duration * 1000 // self.clock_rate
