"""Opus (RFC 6716) encoder and decoder on the system libopus, through cffi.

Chosen by measurement over PyAV and opuslib (bench/opus_bindings.py, report in
bench/results/): this wrapper adds 2-4 µs per 20 ms frame to libopus's own
cost, where opuslib adds about 50 µs per decode and PyAV 18-50 µs per call,
and it alone of the three reaches PLC and in-band FEC decoding. Buffers are
allocated once per object; each call allocates only its result.

Errors: a packet from the network that libopus rejects raises
`OpusPacketError`; a refusal for any other reason (a bad argument from our
own code, a failed allocation) raises `OpusError`; input of the wrong shape
from our own code raises `ValueError`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from cffi import FFI

__all__ = ["OpusDecoder", "OpusEncoder", "OpusError", "OpusPacketError", "OpusUnavailable", "libopus_version"]

LIBRARY = "libopus.so.0"

# From opus.h / opus_defines.h (libopus 1.3, the ABI of libopus.so.0).
_CDEF = """
typedef struct OpusEncoder OpusEncoder;
typedef struct OpusDecoder OpusDecoder;
OpusEncoder *opus_encoder_create(int32_t Fs, int channels, int application, int *error);
void opus_encoder_destroy(OpusEncoder *st);
int32_t opus_encode(OpusEncoder *st, const int16_t *pcm, int frame_size, unsigned char *data, int32_t max_data_bytes);
int opus_encoder_ctl(OpusEncoder *st, int request, ...);
OpusDecoder *opus_decoder_create(int32_t Fs, int channels, int *error);
void opus_decoder_destroy(OpusDecoder *st);
int opus_decode(OpusDecoder *st, const unsigned char *data, int32_t len, int16_t *pcm, int frame_size, int decode_fec);
const char *opus_strerror(int error);
const char *opus_get_version_string(void);
"""

APPLICATION_VOIP = 2048
APPLICATION_AUDIO = 2049
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_DTX = 4016
_INVALID_PACKET = -4

SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
# RFC 6716 §3.4 R5: a packet carries at most 120 ms of audio.
_MAX_PACKET_MS = 120
# RFC 6716 §3.4 R1 / §3.2.1: 1275 bytes is the largest frame libopus emits.
_MAX_PACKET_BYTES = 1275


class OpusUnavailable(RuntimeError):
    """The system libopus could not be loaded."""


class OpusError(Exception):
    """libopus refused a call; `code` is its negative error number."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class OpusPacketError(OpusError):
    """A packet received from a peer is not valid Opus (RFC 6716 §3.4)."""


@functools.cache
def _load() -> tuple[FFI, Any]:
    ffi = FFI()
    ffi.cdef(_CDEF)
    try:
        lib = ffi.dlopen(LIBRARY)
    except OSError as exc:
        raise OpusUnavailable(
            f"cannot load {LIBRARY} ({exc}); install Debian's libopus0 package (scripts/install.sh does)"
        ) from exc
    return ffi, lib


def libopus_version() -> str:
    """The loaded libopus's version string, e.g. "libopus 1.3.1"."""
    ffi, lib = _load()
    return str(ffi.string(lib.opus_get_version_string()).decode("ascii"))


def _strerror(code: int) -> str:
    ffi, lib = _load()
    return str(ffi.string(lib.opus_strerror(code)).decode("ascii"))


def _check_rate(sample_rate: int, channels: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"Opus runs at {SAMPLE_RATES} Hz, not {sample_rate}")
    if channels not in (1, 2):
        raise ValueError(f"Opus carries 1 or 2 channels, not {channels}")


class OpusEncoder:
    """Encodes 20 ms frames of int16 PCM at `sample_rate` into Opus packets.

    The input rate is the rate of the PCM handed in, not the codec's: libopus
    resamples internally, and encoding straight from 8 or 16 kHz PCM (what
    G.711 and G.722 decode to) saves both a resampler and encoder work.
    In-band FEC (RFC 6716 §2.1.7) is on by default so that the far decoder can
    rebuild a lost frame from the next one; DTX is off unless asked for.
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 1,
        *,
        bitrate: int = 32000,
        complexity: int = 5,
        application: int = APPLICATION_VOIP,
        fec: bool = True,
        expected_loss_percent: int = 5,
        dtx: bool = False,
    ) -> None:
        _check_rate(sample_rate, channels)
        self._ffi, self._lib = ffi, lib = _load()
        error = ffi.new("int *")
        state = lib.opus_encoder_create(sample_rate, channels, application, error)
        if error[0] != 0 or state == ffi.NULL:
            raise OpusError(f"opus_encoder_create: {_strerror(error[0])}", error[0])
        self._state = ffi.gc(state, lib.opus_encoder_destroy)
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_samples = sample_rate // 50
        self._frame_bytes = self.frame_samples * channels * 2
        self._out = ffi.new("unsigned char[]", _MAX_PACKET_BYTES)
        self._out_view = ffi.buffer(self._out)
        self._ctl(_SET_BITRATE, bitrate)
        self._ctl(_SET_COMPLEXITY, complexity)
        self._ctl(_SET_INBAND_FEC, int(fec))
        # FEC is only spent when the encoder expects loss: this sets how much.
        self._ctl(_SET_PACKET_LOSS_PERC, expected_loss_percent)
        self._ctl(_SET_DTX, int(dtx))

    def _ctl(self, request: int, value: int) -> None:
        # Variadic arguments need their exact C type (opus_int32) in cffi.
        code = self._lib.opus_encoder_ctl(self._state, request, self._ffi.cast("int32_t", value))
        if code != 0:
            raise OpusError(f"opus_encoder_ctl({request}, {value}): {_strerror(code)}", code)

    def encode(self, pcm: np.ndarray | bytes) -> bytes:
        """One Opus packet for one 20 ms frame (interleaved if stereo)."""
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.int16 or not pcm.flags.c_contiguous:
                raise ValueError("PCM must be a contiguous int16 array")
            given = pcm.nbytes
        else:
            given = len(pcm)
        if given != self._frame_bytes:
            raise ValueError(f"a 20 ms frame is {self._frame_bytes} bytes of int16 PCM, not {given}")
        data = self._ffi.from_buffer("int16_t[]", pcm)
        size = self._lib.opus_encode(self._state, data, self.frame_samples, self._out, _MAX_PACKET_BYTES)
        if size < 0:
            raise OpusError(f"opus_encode: {_strerror(size)}", size)
        return self._out_view[:size]


class OpusDecoder:
    """Decodes Opus packets into int16 PCM at `sample_rate`.

    Decoding straight to 8 or 16 kHz lets libopus do the band-limiting and
    rate change the G.711 / G.722 side needs.
    """

    def __init__(self, sample_rate: int = 48000, channels: int = 1) -> None:
        _check_rate(sample_rate, channels)
        self._ffi, self._lib = ffi, lib = _load()
        error = ffi.new("int *")
        state = lib.opus_decoder_create(sample_rate, channels, error)
        if error[0] != 0 or state == ffi.NULL:
            raise OpusError(f"opus_decoder_create: {_strerror(error[0])}", error[0])
        self._state = ffi.gc(state, lib.opus_decoder_destroy)
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_samples = sample_rate // 50
        self._max_samples = sample_rate * _MAX_PACKET_MS // 1000
        self._pcm = ffi.new("int16_t[]", self._max_samples * channels)
        self._pcm_array = np.frombuffer(ffi.buffer(self._pcm), dtype=np.int16)

    def decode(self, packet: bytes | None, *, fec: bool = False) -> np.ndarray:
        """PCM for one packet, interleaved if stereo; a fresh array each call.

        `packet=None` means the packet was lost: libopus conceals 20 ms (PLC).
        `fec=True` with the packet that *followed* a lost one rebuilds the
        lost 20 ms from that packet's in-band FEC data (RFC 6716 §2.1.7),
        falling back to PLC inside libopus when it carries none; decode the
        same packet again without `fec` for its own audio.
        """
        ffi = self._ffi
        if packet is None:
            data, length, frame_size = ffi.NULL, 0, self.frame_samples
        elif not packet:
            # libopus would take an empty buffer for a loss; an empty RTP
            # payload is a broken peer, not a loss, so say so.
            raise OpusPacketError("empty Opus packet", _INVALID_PACKET)
        else:
            data, length = ffi.from_buffer("unsigned char[]", packet), len(packet)
            # FEC must be asked for exactly the lost frame's duration.
            frame_size = self.frame_samples if fec else self._max_samples
        samples = self._lib.opus_decode(self._state, data, length, self._pcm, frame_size, int(fec))
        if samples < 0:
            error = OpusPacketError if packet is not None and samples == _INVALID_PACKET else OpusError
            raise error(f"opus_decode: {_strerror(samples)}", samples)
        return self._pcm_array[: samples * self.channels].copy()
