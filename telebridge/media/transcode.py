"""One direction of a transcoded stream: RTP of one codec in, RTP of another out, sans-I/O.

Used only when the two legs share no codec (the relay forwards untouched
otherwise). The leg that receives calls :meth:`Transcoder.push`; the
bridge runs :meth:`Transcoder.handle_timer` at :meth:`Transcoder.get_timer`
and what comes out goes to the other leg's ``send_rtp``, whose stream
rewriter gives it the leg's SSRC and numbering.

Rules of operation:

* Voice packets go through the jitter buffer (reordering, loss
  concealment, a steady pace), are decoded, resampled if the two codecs'
  PCM rates differ, and re-packetised at the far side's packet time: the
  output's timestamps advance by exactly the samples encoded.
* Packets in a codec the far side takes as it is (``passthrough``) are
  relayed, renumbered, not transcoded: a browser may send a codec its
  own answer left out (Chrome sends the offer's first codec it supports
  even when setCodecPreferences kept it out of the answer).
* telephone-event packets are not voice: each event is reported once, on
  its first end packet, through ``on_digit`` (the bridge regenerates it at
  the far side's clock and payload type, RFC 4733 §2.5).
* Anything else (comfort noise, RED, a payload type never agreed,
  malformed packets) is dropped and counted; an undecodable payload is
  concealed like a lost one.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

from telebridge.media.dtmf_events import EventReader
from telebridge.media.jitter_buffer import JitterBuffer
from telebridge.media.rtp import RTP_HEADER
from telebridge.media.voice_codecs import VoiceDecoder, VoiceEncoder, UndecodablePayload


@dataclass
class TranscodeStats:
    frames_in: int = 0
    packets_out: int = 0
    undecodable: int = 0
    dropped: int = 0
    digits: int = 0
    passed: int = 0


def rtp_payload(packet: bytes | bytearray) -> bytes | None:
    """The payload of an RTP packet (after CSRCs and extension, without padding); None if malformed."""
    if len(packet) < 12:
        return None
    first = packet[0]
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(packet) < start + 4:
            return None
        start += 4 + 4 * struct.unpack_from("!H", packet, start + 2)[0]
    end = len(packet)
    if first & 0x20:
        if end <= start:
            return None
        end -= packet[-1]
    if end < start:
        return None
    return bytes(packet[start:end])


class Transcoder:
    """``source`` codec packets in, ``sink`` codec packets out."""

    def __init__(
        self,
        decoder: VoiceDecoder,
        encoder: VoiceEncoder,
        source_payload_type: int,
        sink_payload_type: int,
        source_clock: int,
        sink_clock: int,
        event_payload_type: int | None = None,
        resampler: Callable[[np.ndarray], np.ndarray] | None = None,
        sink_name: str = "",
        passthrough: dict[int, int] | None = None,
    ) -> None:
        self.decoder, self.encoder = decoder, encoder
        self.source_payload_type = source_payload_type
        self.sink_payload_type = sink_payload_type
        self.event_payload_type = event_payload_type
        self.resampler = resampler
        self.sink_name = sink_name
        self.passthrough = passthrough or {}
        self.buffer = JitterBuffer(source_clock)
        self.stats = TranscodeStats()
        self.on_packet: Callable[[bytearray, float], None] = lambda packet, now: None
        self.on_digit: Callable[[str, int], None] = lambda digit, duration_ms: None
        self._ticks_per_packet = encoder.frame_samples * sink_clock // encoder.pcm_rate
        self._pending = np.zeros(0, dtype=np.int16)
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._marker = True
        self._events = EventReader(source_clock)

    def push(self, packet: bytearray, now: float) -> None:
        """An RTP packet from the source leg."""
        payload = rtp_payload(packet)
        if payload is None:
            self.stats.dropped += 1
            return
        _, mpt, seq, timestamp, _ = RTP_HEADER.unpack_from(packet)
        pt = mpt & 0x7F
        if pt == self.source_payload_type and payload:
            self.stats.frames_in += 1
            self.buffer.put(seq, timestamp, payload, now)
        elif pt == self.event_payload_type and self.event_payload_type is not None:
            self._event(payload, timestamp)
        elif pt in self.passthrough:
            packet[1] = (packet[1] & 0x80) | self.passthrough[pt]
            self.stats.passed += 1
            self.on_packet(packet, now)
        else:
            self.stats.dropped += 1

    def _event(self, payload: bytes, timestamp: int) -> None:
        digit = self._events.read(payload, timestamp)
        if digit is not None:
            self.stats.digits += 1
            self.on_digit(*digit)

    def get_timer(self) -> float | None:
        return self.buffer.next_time()

    def handle_timer(self, now: float) -> None:
        """Play every frame that is due; full packets go out through ``on_packet``."""
        for frame in self.buffer.pop(now):
            pcm = None
            if frame.payload is not None:
                try:
                    pcm = self.decoder.decode(frame.payload)
                except UndecodablePayload:
                    self.stats.undecodable += 1
            if pcm is None:
                pcm = self.decoder.conceal(self._frame_samples_in(), frame.following)
            if self.resampler is not None:
                pcm = self.resampler(pcm)
            self._pending = np.concatenate((self._pending, pcm)) if len(self._pending) else pcm
            self._flush(now)

    def _frame_samples_in(self) -> int:
        return self.decoder.pcm_rate // 50

    def _flush(self, now: float) -> None:
        size = self.encoder.frame_samples
        while len(self._pending) >= size:
            if len(self._pending) == size:  # the usual case: one frame in, one packet out
                chunk, self._pending = self._pending, self._pending[:0]
            else:
                chunk, self._pending = np.ascontiguousarray(self._pending[:size]), self._pending[size:]
            payload = self.encoder.encode(chunk)
            self._seq = (self._seq + 1) & 0xFFFF
            self._timestamp = (self._timestamp + self._ticks_per_packet) & 0xFFFFFFFF
            marker = 0x80 if self._marker else 0
            packet = bytearray(RTP_HEADER.pack(0x80, marker | self.sink_payload_type, self._seq, self._timestamp, self._ssrc))
            packet += payload
            self._marker = False
            self.stats.packets_out += 1
            self.on_packet(packet, now)
