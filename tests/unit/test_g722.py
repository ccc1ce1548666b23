"""G.722 through libg722: the ITU reference's output, wideband tones, garbage, state per object,
and a cross-check against Debian's libspandsp2."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import pytest
from cffi import FFI

from telebridge.media.g722 import G722Decoder, G722Encoder

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
MINUS_10_DBFS = 32767 * 10 ** (-10 / 20)  # a full-scale sine is 0 dBFS
#: Delay of the encoder's and decoder's QMF filters together, in samples at 16 kHz.
QMF_DELAY = 22


def _tone(hz: float, seconds: float = 2.0, amplitude: float = MINUS_10_DBFS) -> np.ndarray:
    return np.round(amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.int16)


def _frames(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


def _through(pcm: np.ndarray) -> np.ndarray:
    encoder, decoder = G722Encoder(), G722Decoder()
    payloads = [encoder.encode(frame) for frame in _frames(pcm)]
    assert {len(p) for p in payloads} == {FRAME // 2}
    return np.concatenate([decoder.decode(p) for p in payloads])


def _aligned_snr_db(sent: np.ndarray, heard: np.ndarray, settle: int = 1600) -> float:
    """SNR after the QMF delay, skipping the first 100 ms while the ADPCM adapts."""
    a = sent[settle : len(sent) - QMF_DELAY].astype(float)
    b = heard[settle + QMF_DELAY :].astype(float)
    return float(10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)))


def _peak_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(float) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * RATE / len(pcm))


def _sha256(data: bytes | np.ndarray) -> str:
    return hashlib.sha256(data.astype("<i2").tobytes() if isinstance(data, np.ndarray) else data).hexdigest()


# Inputs built from integers and SHAKE-256 only, so that they are the same
# bytes on every machine and numpy version.
VECTOR_SAMPLES = 16384


def _noise() -> np.ndarray:
    """White noise peaking at -6 dBFS."""
    return np.frombuffer(hashlib.shake_256(b"telebridge g722 noise").digest(2 * VECTOR_SAMPLES), "<i2").astype(np.int16) >> 1


def _square() -> np.ndarray:
    """A 1 kHz square wave at -6 dBFS."""
    return np.where(np.arange(VECTOR_SAMPLES) // 8 % 2, 16383, -16384).astype(np.int16)


def _garbage() -> bytes:
    return hashlib.shake_256(b"telebridge g722 garbage").digest(VECTOR_SAMPLES // 2)


def test_a_1_khz_tone_arrives_at_1_khz_with_its_snr() -> None:
    """Measured 47.5 dB at -10 dBFS (the lower band's 6-bit ADPCM). The codec is
    bit-exact and deterministic, so the 3 dB margin only absorbs float rounding in
    building the tone; a lost state between frames costs far more (fresh encoder
    per frame: -9 dB, fresh decoder per frame: 0 dB)."""
    heard = _through(_tone(1000))
    assert abs(_peak_hz(heard[1600:]) - 1000) <= 10
    assert _aligned_snr_db(_tone(1000), heard) > 44


def test_a_6_khz_tone_survives_as_g711_could_not() -> None:
    """G.711 samples at 8 kHz and cannot carry anything above 4 kHz; G.722's upper
    band (4-8 kHz, 2-bit ADPCM) does: measured 27.2 dB, asserted above 24."""
    sent = _tone(6000)
    heard = _through(sent)
    assert abs(_peak_hz(heard[1600:]) - 6000) <= 10
    assert _aligned_snr_db(sent, heard) > 24
    level_db = 20 * np.log10(np.std(heard[1600:].astype(float)) / np.std(sent[1600:].astype(float)))
    assert abs(level_db) < 0.5


@pytest.mark.parametrize(
    "make_input, codes_sha256, decoded_sha256",
    [
        (
            _noise,
            "5bd3028676690060eadd6fc9c2d16217db5ca1d12cba8bf208a74aa086730470",
            "770c24f7448a3b951f52afaa969bc06bc980830318b1e20777cbf341d4924230",
        ),
        (
            _square,
            "e3a08a29a0991e0a8fcbcfefe51bd15bd4294d0a5d67a557d4ec0818f211ee67",
            "31e96bee99a94a855d1ec83869f05397827432f93f78dc65c458a32349e9cbc0",
        ),
    ],
    ids=["noise", "square"],
)
def test_encoding_and_decoding_match_the_itu_reference(make_input: Any, codes_sha256: str, decoded_sha256: str) -> None:
    """Digests of what the ITU-T G.191 reference G.722 (g722demo, mode 1, built from
    github openitu/STL 139db497 of 2023-04-30; that build reproduced the STL's own
    test files) made of these inputs: its codes, then its decoding of them as int16
    little-endian. Encoded here 20 ms at a time, as on a call."""
    encoder, decoder = G722Encoder(), G722Decoder()
    codes = b"".join(encoder.encode(frame) for frame in _frames(make_input()))
    assert _sha256(codes) == codes_sha256
    assert _sha256(np.concatenate([decoder.decode(codes[i : i + 160]) for i in range(0, len(codes), 160)])) == decoded_sha256


def test_garbage_decodes_as_the_itu_reference_does_and_saturates() -> None:
    """Random bytes drive the decoder to full scale: the reference saturates there
    (digest from g722demo as above), and so must we, rather than wrap around."""
    pcm = G722Decoder().decode(_garbage())
    assert len(pcm) == VECTOR_SAMPLES
    assert pcm.min() == -32768 and pcm.max() == 32767
    assert _sha256(pcm) == "8e4e58f73f6f5479cbbd08af476612ab7ae732760e98d8ae2e92ded421da3d36"


def test_any_bytes_decode_to_two_samples_each() -> None:
    decoder = G722Decoder()
    for payload in (b"\xff\x00 not g722 at all", bytes(range(256)), b"\x00" * 1000, bytearray(b"\x7f\x80"), memoryview(b"xyz")):
        pcm = decoder.decode(payload)
        assert pcm.dtype == np.int16 and len(pcm) == 2 * len(payload)
    empty = G722Decoder().decode(b"")
    assert empty.dtype == np.int16 and len(empty) == 0
    assert G722Encoder().encode(np.zeros(0, dtype=np.int16)) == b""


def test_state_carries_across_frames() -> None:
    tone = _tone(1000, 0.2)
    whole = G722Encoder().encode(tone)
    encoder = G722Encoder()
    assert b"".join(encoder.encode(frame) for frame in _frames(tone)) == whole
    decoder = G722Decoder()
    assert np.array_equal(np.concatenate([decoder.decode(whole[i : i + 160]) for i in range(0, len(whole), 160)]), G722Decoder().decode(whole))


def test_each_object_has_its_own_state() -> None:
    first, second = _tone(1000, 0.2), _tone(3000, 0.2)
    alone = G722Encoder().encode(first)
    # Two encoders fed in turn, as the two directions of a call are, each give what they give alone.
    a, b = G722Encoder(), G722Encoder()
    interleaved_a, interleaved_b = [], []
    for frame_a, frame_b in zip(_frames(first), _frames(second)):
        interleaved_a.append(a.encode(frame_a))
        interleaved_b.append(b.encode(frame_b))
    assert b"".join(interleaved_a) == alone
    assert b"".join(interleaved_b) == G722Encoder().encode(second)
    # An encoder that has heard other audio is in another state than a fresh one.
    busy = G722Encoder()
    busy.encode(second[:FRAME])
    assert busy.encode(first[:FRAME]) != alone[: FRAME // 2]
    # Same for decoders.
    d1, d2 = G722Decoder(), G722Decoder()
    d2.decode(_garbage()[:160])
    assert not np.array_equal(d1.decode(alone), d2.decode(alone))


def test_pcm_of_the_wrong_shape_is_refused() -> None:
    encoder = G722Encoder()
    for wrong in (np.zeros(320, dtype=np.float64), np.zeros((2, 160), dtype=np.int16), np.zeros(321, dtype=np.int16), b"\x00" * 640):
        with pytest.raises(ValueError):
            encoder.encode(wrong)
    # A strided view is fine.
    tone = _tone(1000, 0.04)
    assert G722Encoder().encode(tone[::2]) == G722Encoder().encode(tone[::2].copy())


# Debian's libspandsp2, which scripts/test-packages.txt installs, is a second C
# G.722: libg722 was split out of spandsp, so the two share an ancestor and
# agreeing proves less than the ITU digests above, but it checks our binding
# against another caller's over more input. spandsp 0.0.6's decoder wraps
# around where libg722 and the ITU reference saturate, so the decoders are
# compared only on streams that stay below full scale.
_SPANDSP_CDEF = """
typedef struct g722_encode_state_s g722_encode_state_t;
typedef struct g722_decode_state_s g722_decode_state_t;
g722_encode_state_t *g722_encode_init(g722_encode_state_t *s, int rate, int options);
int g722_encode_free(g722_encode_state_t *s);
int g722_encode(g722_encode_state_t *s, uint8_t g722_data[], const int16_t amp[], int len);
g722_decode_state_t *g722_decode_init(g722_decode_state_t *s, int rate, int options);
int g722_decode_free(g722_decode_state_t *s);
int g722_decode(g722_decode_state_t *s, int16_t amp[], const uint8_t g722_data[], int len);
"""


@functools.cache
def _spandsp() -> tuple[FFI, Any]:
    ffi = FFI()
    ffi.cdef(_SPANDSP_CDEF)
    try:
        return ffi, ffi.dlopen("libspandsp.so.2")
    except OSError as e:
        raise AssertionError("libspandsp.so.2 missing: install scripts/test-packages.txt (sh scripts/install.sh --test)") from e


def _spandsp_encode(pcm: np.ndarray) -> bytes:
    ffi, lib = _spandsp()
    state = ffi.gc(lib.g722_encode_init(ffi.NULL, 64000, 0), lib.g722_encode_free)
    out = ffi.new("uint8_t[]", len(pcm) // 2)
    written = lib.g722_encode(state, out, ffi.from_buffer("int16_t[]", np.ascontiguousarray(pcm)), len(pcm))
    return ffi.buffer(out, written)[:]


def _spandsp_decode(payload: bytes) -> np.ndarray:
    ffi, lib = _spandsp()
    state = ffi.gc(lib.g722_decode_init(ffi.NULL, 64000, 0), lib.g722_decode_free)
    out = ffi.new("int16_t[]", 2 * len(payload))
    samples = lib.g722_decode(state, out, payload, len(payload))
    return np.frombuffer(ffi.buffer(out, 2 * samples), dtype=np.int16).copy()


@pytest.mark.parametrize(
    "make_input",
    [_noise, _square, lambda: _tone(1000), lambda: _tone(6000), lambda: _tone(300, amplitude=30000)],
    ids=["noise", "square", "1 kHz", "6 kHz", "300 Hz at -0.8 dBFS"],
)
def test_libg722_and_spandsp_agree_bit_for_bit(make_input: Any) -> None:
    pcm = make_input()
    encoder = G722Encoder()
    ours = b"".join(encoder.encode(frame) for frame in _frames(pcm))
    assert ours == _spandsp_encode(pcm)
    decoder = G722Decoder()
    heard = np.concatenate([decoder.decode(ours[i : i + 160]) for i in range(0, len(ours), 160)])
    assert np.array_equal(heard, _spandsp_decode(ours))
