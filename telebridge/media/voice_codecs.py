"""The voice codecs the transcoder runs, behind one small interface.

Rules of operation:

* Each codec decodes to, and encodes from, int16 mono PCM at a rate of its
  own (``pcm_rate``): 8 kHz for G.711, 16 kHz for G.722. Opus takes and
  gives whatever rate the other side needs (libopus converts internally,
  measured cheaper than a resampler of ours), so Opus <-> G.711 runs at
  8 kHz and Opus <-> G.722 at 16 kHz with no resampler at all.
* RTP clocks are the SDP's: 48000 for Opus, 8000 for G.711 and, by a
  historical error kept by RFC 3551 §4.5.2, 8000 for G.722 too.
* A lost frame is concealed: Opus by its PLC or from the next packet's
  in-band FEC; G.711 and G.722 by a quieter repeat of the last frame, then
  silence.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from telebridge.media import g711
from telebridge.media.g722 import G722Decoder, G722Encoder
from telebridge.media.opus import OpusDecoder, OpusEncoder, OpusError

#: Codecs the gateway can transcode, by lower-case SDP name, with their RTP clock.
RTP_CLOCK = {"opus": 48000, "pcmu": 8000, "pcma": 8000, "g722": 8000}
NATIVE_PCM_RATE = {"pcmu": 8000, "pcma": 8000, "g722": 16000}


class UndecodablePayload(Exception):
    """A payload the codec cannot decode (the frame is concealed instead)."""


class VoiceDecoder(Protocol):
    pcm_rate: int

    def decode(self, payload: bytes) -> np.ndarray: ...

    def conceal(self, samples: int, following: bytes | None) -> np.ndarray: ...


class VoiceEncoder(Protocol):
    pcm_rate: int
    frame_samples: int

    def encode(self, pcm: np.ndarray) -> bytes: ...


def pcm_rate_between(source: str, sink: str) -> int:
    """The PCM rate a stream from ``source`` to ``sink`` is carried at in between."""
    if source == "opus":
        return NATIVE_PCM_RATE[sink]
    return NATIVE_PCM_RATE[source]


class _Repeater:
    """Conceals a lost G.711/G.722 frame: the last one at half level once, then silence."""

    def __init__(self) -> None:
        self._last = np.zeros(0, dtype=np.int16)
        self._repeated = False

    def heard(self, pcm: np.ndarray) -> np.ndarray:
        self._last = pcm
        self._repeated = False
        return pcm

    def conceal(self, samples: int) -> np.ndarray:
        if self._repeated or len(self._last) != samples:
            return np.zeros(samples, dtype=np.int16)
        self._repeated = True
        return self._last // 2


class OpusVoiceDecoder:
    def __init__(self, pcm_rate: int) -> None:
        self.pcm_rate = pcm_rate
        self._decoder = OpusDecoder(pcm_rate)

    def decode(self, payload: bytes) -> np.ndarray:
        try:
            return self._decoder.decode(payload)
        except OpusError as e:
            raise UndecodablePayload(str(e)) from None

    def conceal(self, samples: int, following: bytes | None) -> np.ndarray:
        try:
            if following:
                return self._decoder.decode(following, fec=True)
            return self._decoder.decode(None)
        except OpusError:
            return np.zeros(samples, dtype=np.int16)


# What a G.711/G.722 voice is re-encoded at: complexity 3 costs about 72 µs a
# frame from 8 kHz against 92 µs at 5, and on a band-limited source the two
# measured alike (39.6 dB on a sweep, bench/transcode.py and test_transcode.py).
TRANSCODING_COMPLEXITY = 3


class OpusVoiceEncoder:
    def __init__(self, pcm_rate: int) -> None:
        self.pcm_rate = pcm_rate
        self._encoder = OpusEncoder(pcm_rate, complexity=TRANSCODING_COMPLEXITY)
        self.frame_samples = self._encoder.frame_samples  # 20 ms: what every browser takes

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._encoder.encode(pcm)


class G711Decoder:
    pcm_rate = 8000

    def __init__(self, law: str) -> None:
        self._decode = g711.decode_ulaw if law == "pcmu" else g711.decode_alaw
        self._repeater = _Repeater()

    def decode(self, payload: bytes) -> np.ndarray:
        return self._repeater.heard(self._decode(payload))

    def conceal(self, samples: int, following: bytes | None) -> np.ndarray:
        return self._repeater.conceal(samples)


class G711Encoder:
    pcm_rate = 8000

    def __init__(self, law: str, ptime_ms: int) -> None:
        self._encode = g711.encode_ulaw if law == "pcmu" else g711.encode_alaw
        self.frame_samples = 8 * ptime_ms

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._encode(pcm)


class G722VoiceDecoder:
    pcm_rate = 16000

    def __init__(self) -> None:
        self._decoder = G722Decoder()
        self._repeater = _Repeater()

    def decode(self, payload: bytes) -> np.ndarray:
        return self._repeater.heard(self._decoder.decode(payload))

    def conceal(self, samples: int, following: bytes | None) -> np.ndarray:
        return self._repeater.conceal(samples)


class G722VoiceEncoder:
    pcm_rate = 16000

    def __init__(self, ptime_ms: int) -> None:
        self._encoder = G722Encoder()
        self.frame_samples = 16 * ptime_ms

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._encoder.encode(pcm)


def make_decoder(name: str, pcm_rate: int) -> VoiceDecoder:
    """A decoder for codec ``name`` (lower case) giving PCM at ``pcm_rate``."""
    if name == "opus":
        return OpusVoiceDecoder(pcm_rate)
    if name in ("pcmu", "pcma"):
        return G711Decoder(name)
    if name == "g722":
        return G722VoiceDecoder()
    raise ValueError(f"cannot transcode {name}")


def make_encoder(name: str, pcm_rate: int, ptime_ms: int = 20) -> VoiceEncoder:
    """An encoder for codec ``name`` taking PCM at ``pcm_rate``, ``ptime_ms`` per packet."""
    if name == "opus":
        return OpusVoiceEncoder(pcm_rate)
    if name in ("pcmu", "pcma"):
        return G711Encoder(name, ptime_ms)
    if name == "g722":
        return G722VoiceEncoder(ptime_ms)
    raise ValueError(f"cannot transcode {name}")
