"""An adaptive, bounded jitter buffer for the transcoding path, sans-I/O.

Relayed media needs none (the far end has its own); a stream we decode and
re-encode does, because the encoder must be fed at a steady pace and the
decoder told which frame is missing so it can conceal it.

Rules of operation:

* Frames play in sequence-number order; the RTP timestamp, through the
  playout offset, says when. The offset is fixed when the stream starts
  (or restarts after a pause): arrival time of the first packet plus the
  target delay.
* A missing frame whose time has come is handed out as a loss (with the
  packet after it, when that is already here, so Opus can rebuild it from
  in-band FEC). After ``MAX_CONCEALED`` losses in a row with nothing
  queued the stream is taken as paused (DTX, hold, a silent peer): nothing
  more is played until a packet comes, which restarts the playout. So a
  pause never turns into seconds of made-up audio.
* Settling: the playout is anchored on the first packet, which may have
  come quicker than those after it. For ``SETTLE`` seconds after a
  (re)start, a frame whose time comes with nothing at all queued is waited
  for (the playout moves one frame later, at most ``SETTLE_WAITS`` times)
  instead of being made up: a concealed frame in the first second of a
  call is an audible click, a few ms more delay is not.
* Adaptive: a packet that comes after its time (a late one, dropped and
  counted) moves the playout one frame later, up to ``max_delay``; when no
  packet has been late for ``SHRINK_AFTER`` seconds and every packet in
  that time arrived at least two frames early, the playout moves one frame
  earlier (one frame skipped), down to ``min_delay``.
* Bounded: at most ``capacity`` packets are held; a packet whose time is
  further ahead than the buffer could hold (a timestamp jump, a new
  source) restarts the playout instead of being queued forever.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CONCEALED = 5
SETTLE = 1.0
SETTLE_WAITS = 2
SHRINK_AFTER = 5.0
DEFAULT_FRAME = 0.02


@dataclass(slots=True)
class Frame:
    """One frame's worth of playout: a payload, or a loss (``payload`` None)."""

    payload: bytes | None
    #: For a loss: the packet after the lost one, if already here (Opus FEC).
    following: bytes | None = None


@dataclass
class JitterStats:
    """What the buffer did, for quality reporting and tests."""

    played: int = 0
    concealed: int = 0
    late: int = 0
    duplicate: int = 0
    overflow: int = 0
    restarts: int = 0


class JitterBuffer:
    """Packets in, one frame out per frame time."""

    def __init__(self, clock_rate: int, min_delay: float = 0.04, max_delay: float = 0.2, capacity: int = 50) -> None:
        self.clock_rate = clock_rate
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.capacity = capacity
        self.delay = min_delay
        self.stats = JitterStats()
        self._packets: dict[int, tuple[int, bytes]] = {}  # extended seq -> (extended ts, payload)
        self._next_seq: int | None = None  # extended sequence number to play next
        self._next_ts = 0  # its extended timestamp (expected, when missing)
        self._offset = 0.0  # playout time = ts / clock_rate + offset
        self._frame_ticks = int(DEFAULT_FRAME * clock_rate)
        self._concealed_in_row = 0
        self._paused = True
        self._highest_seq: int | None = None
        self._highest_ts = 0
        self._calm_since = 0.0
        self._min_lead = float("inf")
        self._started = 0.0
        self._settle_waits = 0

    # -- input ---------------------------------------------------------------------

    def put(self, seq: int, timestamp: int, payload: bytes, now: float) -> bool:
        """Queue one packet; False when it was late, a duplicate, or no room was left."""
        ext_seq, ext_ts = self._extend(seq, timestamp)
        if self._paused:
            self._restart(ext_seq, ext_ts, now)
        elif ext_seq < self._next_seq:  # type: ignore[operator]
            self.stats.late += 1
            self._later()
            self._calm_since = now
            return False
        elif ext_seq in self._packets:
            self.stats.duplicate += 1
            return False
        due = ext_ts / self.clock_rate + self._offset
        if due - now > self.max_delay + self.capacity * self._frame_ticks / self.clock_rate:
            # Far beyond anything we would hold: the stream jumped; start over from it.
            self._restart(ext_seq, ext_ts, now)
            due = ext_ts / self.clock_rate + self._offset
        if len(self._packets) >= self.capacity:
            self.stats.overflow += 1
            return False
        self._packets[ext_seq] = (ext_ts, payload)
        self._min_lead = min(self._min_lead, due - now)
        return True

    def _extend(self, seq: int, timestamp: int) -> tuple[int, int]:
        """16-bit sequence and 32-bit timestamp unwrapped against the highest seen."""
        if self._highest_seq is None:
            self._highest_seq, self._highest_ts = seq, timestamp
            return seq, timestamp
        ext_seq = self._highest_seq + ((seq - self._highest_seq + 0x8000) & 0xFFFF) - 0x8000
        ext_ts = self._highest_ts + ((timestamp - self._highest_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if ext_seq > self._highest_seq:
            self._highest_seq, self._highest_ts = ext_seq, ext_ts
        return ext_seq, ext_ts

    def _restart(self, ext_seq: int, ext_ts: int, now: float) -> None:
        if self._next_seq is not None:
            self.stats.restarts += 1
        self._packets.clear()
        self._paused = False
        self._concealed_in_row = 0
        self._next_seq, self._next_ts = ext_seq, ext_ts
        self._offset = now + self.delay - ext_ts / self.clock_rate
        self._calm_since = now
        self._min_lead = float("inf")
        self._started = now
        self._settle_waits = 0

    def _later(self) -> bool:
        """Play one frame later from now on, if ``max_delay`` allows it."""
        if self.delay + self._frame_ticks / self.clock_rate > self.max_delay + 1e-9:
            return False
        step = self._frame_ticks / self.clock_rate
        self.delay += step
        self._offset += step
        return True

    # -- output --------------------------------------------------------------------

    def next_time(self) -> float | None:
        """When the next frame is due; ``None`` while paused."""
        if self._paused or self._next_seq is None:
            return None
        # A queued packet's own timestamp rules (longer frames, DTX gaps).
        entry = self._packets.get(self._next_seq)
        return (entry[0] if entry is not None else self._next_ts) / self.clock_rate + self._offset

    def pop(self, now: float) -> list[Frame]:
        """Every frame whose time has come, in order."""
        frames: list[Frame] = []
        while (due := self.next_time()) is not None and due <= now:
            if self._settling(now) and self._later():
                self._settle_waits += 1
                continue
            frames.append(self._take())
        self._maybe_shrink(now)
        return frames

    def _settling(self, now: float) -> bool:
        """Whether the next frame is to be waited for rather than concealed (see Settling)."""
        return not self._packets and now - self._started < SETTLE and self._settle_waits < SETTLE_WAITS

    def _take(self) -> Frame:
        seq = self._next_seq
        assert seq is not None
        entry = self._packets.pop(seq, None)
        self._next_seq = seq + 1
        if entry is not None:
            ts, payload = entry
            following = self._packets.get(seq + 1)
            if following is not None and 0 < following[0] - ts <= self.clock_rate // 8:
                self._frame_ticks = following[0] - ts  # 10 to 120 ms frames, not a DTX gap
            self._next_ts = ts + self._frame_ticks
            self._concealed_in_row = 0
            self.stats.played += 1
            return Frame(payload)
        self._next_ts += self._frame_ticks
        self._concealed_in_row += 1
        self.stats.concealed += 1
        if self._concealed_in_row >= MAX_CONCEALED and not self._packets:
            self._paused = True
        following = self._packets.get(seq + 1)
        return Frame(None, following[1] if following is not None else None)

    def _maybe_shrink(self, now: float) -> None:
        if now - self._calm_since < SHRINK_AFTER:
            return
        frame = self._frame_ticks / self.clock_rate
        if self._min_lead >= 2 * frame and self.delay - frame >= self.min_delay - 1e-9 and not self._paused:
            # Skip one frame: the queue has been deeper than needed for a while.
            self.delay -= frame
            self._offset -= frame
            self._packets.pop(self._next_seq, None)  # type: ignore[arg-type]
            self._next_seq += 1  # type: ignore[operator]
            self._next_ts += self._frame_ticks
        self._calm_since = now
        self._min_lead = float("inf")
