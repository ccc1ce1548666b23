"""G.722 (ITU-T G.722, 64 kbit/s mode) through sippy's libg722 (PyPI ``g722``).

G.722 is sub-band ADPCM, sample by sample, which pure Python would run at
milliseconds per frame; libg722 is a maintained C implementation with a
CPython extension. Chosen by measurement over Debian's libspandsp2 through
cffi (bench/g7xx_codecs.py, report in bench/results/): the two cost the same
(about 17 µs to encode and 12-14 µs to decode a 20 ms frame) and their
encoders give identical bitstreams, but spandsp 0.0.6's decoder wraps
around instead of saturating when a loud or corrupt stream overloads it
(clicks of a full 65535 steps), where libg722 saturates as the ITU
reference does. libg722 was split out of spandsp, so their agreement is
not independent evidence; the evidence is that libg722, encoding and
decoding, matched the ITU-T G.191 reference G.722 (its g722demo, built for
the purpose) bit for bit on the reference's own speech test files and on
noise, tones and random payloads, with one exception: on input within
1-2 dB of full scale with strong high frequencies its encoder chooses
other codes than the reference, of the same quality (decoded SNR equal to
0.1 dB). tests/unit/test_g722.py checks digests of the reference's output
for noise, a square wave and random payloads.

Rules of operation:

* PCM is int16 mono at 16 kHz, in and out: 20 ms is 320 samples and 160
  bytes, one byte per two samples. On the wire, though, the RTP clock of
  G.722 is 8000 Hz (RFC 3551 §4.5.2 keeps an error of RFC 1890), so
  timestamps advance by 160 per 20 ms frame and SDP says G722/8000.
* Bytes are G.722's 8-bit code words, the high sub-band's 2 bits above
  the low sub-band's 6, as G.722 orders them; only the 64 kbit/s mode is
  offered.
* One object per direction of a call: each keeps its ADPCM and QMF state
  from one frame to the next, so it must see one stream from its start.
* Total: every byte is a valid code word, so any payload decodes, to two
  samples per byte; empty in, empty out.

Errors: PCM that is not a one-dimensional int16 array of an even number
of samples (our own code's mistake, never the network's) raises
`ValueError`.
"""

from __future__ import annotations

import numpy as np
from G722 import G722

__all__ = ["BIT_RATE", "RTP_CLOCK_RATE", "SAMPLE_RATE", "G722Decoder", "G722Encoder"]

SAMPLE_RATE = 16000
BIT_RATE = 64000
#: RFC 3551 §4.5.2: the RTP timestamp rate, half the real sample rate.
RTP_CLOCK_RATE = 8000


def _codec() -> G722:
    # use_numpy=False pins decode()'s result to array('h'): with the
    # optional G722-numpy package present libg722 would return ndarrays.
    return G722(SAMPLE_RATE, BIT_RATE, use_numpy=False)


class G722Encoder:
    """Encodes 16 kHz int16 PCM into G.722 at 64 kbit/s, keeping state across calls."""

    def __init__(self) -> None:
        # libg722's object has an encoder and a decoder state; this one uses the encoder's.
        self._encode = _codec().encode

    def encode(self, pcm: np.ndarray) -> bytes:
        """G.722 bytes for int16 PCM at 16 kHz, one byte per two samples (160 per 20 ms)."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("G.722 encodes a one-dimensional int16 array of 16 kHz PCM")
        if pcm.size % 2:
            raise ValueError(f"G.722 encodes pairs of samples, not {pcm.size}")
        # libg722 reads a native int16 buffer in place; a strided view is copied first.
        return self._encode(np.ascontiguousarray(pcm))


class G722Decoder:
    """Decodes G.722 at 64 kbit/s into 16 kHz int16 PCM, keeping state across calls."""

    def __init__(self) -> None:
        self._decode = _codec().decode

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray:
        """int16 PCM at 16 kHz for G.722 bytes, two samples per byte; a fresh array each call."""
        # libg722 takes bytes only; the array it returns is new each call and becomes ours.
        return np.frombuffer(self._decode(bytes(payload)), dtype=np.int16)
