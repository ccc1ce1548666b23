"""G.711 PCMU (mu-law) and PCMA (A-law), ITU-T G.711, in numpy.

Both laws are tabulated once at import: a 256-entry decode table and a
65536-entry encode table indexed by the int16 sample's bit pattern
(``pcm.view(np.uint16)``), so a 20 ms frame is one numpy lookup each way
(about 1-2 µs, bench/g7xx_codecs.py) with no per-sample Python.

The tables follow ITU-T G.191's reference G.711 (the ITU's own C code),
whose conventions G.711 leaves to the implementer: the linear side is
16-bit PCM of which mu-law uses the 14 and A-law the 13 most significant
bits, negative samples are quantised in one's complement (so -1 codes like
0 but with the sign of a negative), and decoding returns the midpoint of
each decision interval scaled back to 16 bits. Checked once against
G.191's test sweep (all 65536 samples, both laws, encode and decode: equal).

* mu-law's largest code decodes to +-32124 and inputs beyond it clip;
  A-law's to +-32256. Each encoding is exact to half its segment's step:
  4 (mu-law's smallest step is 8) or 8 up to 512 (both laws' top step is 1024).
* mu-law has two codes for zero, 0xFF (+0) and 0x7F (-0); both decode to
  0, and the encoder makes 0xFF from 0 and 0x7F from -1..-4.
* Total: every byte decodes, every int16 sample encodes, empty gives empty.

Errors: a PCM array that is not one-dimensional int16 (our own code's
mistake, never the network's) raises `ValueError`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_alaw", "decode_ulaw", "encode_alaw", "encode_ulaw"]

#: Every int16 value, ordered by its bit pattern read as uint16 (0, 1, ...,
#: 32767, -32768, ..., -1), so that a table built over it is indexed by
#: ``pcm.view(np.uint16)``.
_ALL_SAMPLES = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _magnitude_and_sign(bits_dropped: int) -> tuple[np.ndarray, np.ndarray]:
    """G.191's magnitude (one's complement for negatives) on the top bits, and which are negative."""
    negative = _ALL_SAMPLES < 0
    return np.where(negative, ~_ALL_SAMPLES, _ALL_SAMPLES) >> bits_dropped, negative.astype(np.int32)


def _frozen(table: np.ndarray) -> np.ndarray:
    table.setflags(write=False)
    return table


def _ulaw_encode_table() -> np.ndarray:
    magnitude, negative = _magnitude_and_sign(2)  # 14-bit linear
    # The bias of 33 makes segment edges powers of two: segment s holds
    # biased magnitudes [32 << s, 64 << s), in steps of 2 << s (14-bit units).
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = np.searchsorted(np.array([64 << s for s in range(7)]), biased, side="right")
    mantissa = (biased >> (segment + 1)) & 0x0F
    # Code words are sent inverted; a set top bit marks a positive sample.
    return _frozen((~((negative << 7) | (segment << 4) | mantissa) & 0xFF).astype(np.uint8))


def _ulaw_decode_table() -> np.ndarray:
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    segment, mantissa = (inverted >> 4) & 0x07, inverted & 0x0F
    # Interval midpoint in 16-bit units: ((2m + 33) << (s + 1)) - 33, times 4.
    magnitude = (((mantissa << 3) + 132) << segment) - 132
    return _frozen(np.where(inverted & 0x80, -magnitude, magnitude).astype(np.int16))


def _alaw_encode_table() -> np.ndarray:
    magnitude, negative = _magnitude_and_sign(4)  # 12 bits and a sign: 13-bit linear
    # Segment 0 holds 0-15 and segment 1 16-31, both in steps of 1; segment
    # s >= 2 holds [16 << (s-1), 32 << (s-1)) in steps of 1 << (s-1).
    segment = np.searchsorted(np.array([16 << s for s in range(7)]), magnitude, side="right")
    mantissa = (magnitude >> np.maximum(segment - 1, 0)) & 0x0F
    # Even bits are inverted on the line (0x55); a set top bit marks a positive sample.
    return _frozen((((1 - negative) << 7 | segment << 4 | mantissa) ^ 0x55).astype(np.uint8))


def _alaw_decode_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment, mantissa = (code >> 4) & 0x07, code & 0x0F
    # Interval midpoint in 16-bit units; segments above 0 have the implicit leading 1.
    magnitude = ((np.where(segment > 0, mantissa + 16, mantissa) << 4) + 8) << np.maximum(segment - 1, 0)
    return _frozen(np.where(code & 0x80, magnitude, -magnitude).astype(np.int16))


_ULAW_ENCODE = _ulaw_encode_table()
_ULAW_DECODE = _ulaw_decode_table()
_ALAW_ENCODE = _alaw_encode_table()
_ALAW_DECODE = _alaw_decode_table()


def _bit_patterns(pcm: np.ndarray) -> np.ndarray:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError("G.711 encodes a one-dimensional int16 array of PCM")
    return pcm.view(np.uint16)


def encode_ulaw(pcm: np.ndarray) -> bytes:
    """PCMU bytes for int16 PCM (8 kHz for RTP), one byte per sample."""
    return _ULAW_ENCODE.take(_bit_patterns(pcm)).tobytes()


def decode_ulaw(payload: bytes | bytearray | memoryview) -> np.ndarray:
    """int16 PCM for PCMU bytes, one sample per byte; a fresh array each call."""
    return _ULAW_DECODE.take(np.frombuffer(payload, dtype=np.uint8))


def encode_alaw(pcm: np.ndarray) -> bytes:
    """PCMA bytes for int16 PCM (8 kHz for RTP), one byte per sample."""
    return _ALAW_ENCODE.take(_bit_patterns(pcm)).tobytes()


def decode_alaw(payload: bytes | bytearray | memoryview) -> np.ndarray:
    """int16 PCM for PCMA bytes, one sample per byte; a fresh array each call."""
    return _ALAW_DECODE.take(np.frombuffer(payload, dtype=np.uint8))
