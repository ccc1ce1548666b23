"""G.711 mu-law and A-law: G.711's code points, the ITU reference's output, bounds and a tone's SNR."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from telebridge.media import g711

ALL_CODES = bytes(range(256))
#: Every int16 value in ascending order: the input of ITU-T G.191's G.711 test sweep (sweep.src).
EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
LAWS = ("ulaw", "alaw")


def _codec(law: str):
    return getattr(g711, f"encode_{law}"), getattr(g711, f"decode_{law}")


def _sha256(data: bytes | np.ndarray) -> str:
    return hashlib.sha256(data.astype("<i2").tobytes() if isinstance(data, np.ndarray) else data).hexdigest()


def _snr_db(reference: np.ndarray, received: np.ndarray) -> float:
    a, b = reference.astype(float), received.astype(float)
    return float(10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)))


def test_mu_law_code_points_from_the_standard() -> None:
    # 0xFF is +0 and 0x7F -0; 0x80 and 0x00 are the largest magnitudes, 8031 on G.711's 14-bit scale.
    assert g711.decode_ulaw(bytes([0xFF, 0x7F, 0x00, 0x80])).tolist() == [0, 0, -32124, 32124]
    assert g711.encode_ulaw(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0x7F, 0x80, 0x00])


def test_a_law_code_points_from_the_standard() -> None:
    # Even bits are inverted on the line: 0xD5 and 0x55 are the smallest magnitudes, 0xAA and 0x2A the largest.
    assert g711.decode_alaw(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert g711.encode_alaw(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0x55, 0xAA, 0x2A])


@pytest.mark.parametrize(
    "law, codes_sha256, decoded_sha256",
    [
        (
            "ulaw",
            "90c29de505fb68e766118303bd552a16005dcf810873698bee1d8f3b247ce28c",
            "cf9f90195534a105f211b1fb5c511ab45ee76827ac0987d6cc804afb897ef0f6",
        ),
        (
            "alaw",
            "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b",
            "faf8570479a0e7d0e1da55d48c42e76961d0e5c285c35d42e9f6dafbafae8a35",
        ),
    ],
)
def test_every_sample_encodes_and_decodes_as_the_itu_reference_does(law: str, codes_sha256: str, decoded_sha256: str) -> None:
    """Digests of ITU-T G.191's G.711 test files for its sweep of all 65536 samples:
    sweep-r.u / sweep-r.a (codes, one per 16-bit word, taken as bytes here) and
    sweep-r.reu / sweep-r.rea (encoded then decoded, int16 little-endian), from the
    STL's src/g711/test_data (github openitu/STL, 2023-04-30). The files are not
    stored here; their digests are."""
    encode, decode = _codec(law)
    codes = encode(EVERY_SAMPLE)
    assert _sha256(codes) == codes_sha256
    assert _sha256(decode(codes)) == decoded_sha256


def test_every_code_survives_decode_then_encode() -> None:
    # mu-law's 0x7F is -0: it decodes to 0, which encodes as +0, 0xFF. Every other code is its own.
    assert g711.encode_ulaw(g711.decode_ulaw(ALL_CODES)) == ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.encode_alaw(g711.decode_alaw(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize("law", LAWS)
def test_decoding_is_odd_and_monotonic(law: str) -> None:
    encode, decode = _codec(law)
    levels = decode(ALL_CODES).astype(np.int32)
    # The sign bit is 0x80 in both laws: flipping it negates the level.
    assert np.array_equal(levels[np.arange(256) ^ 0x80], -levels)
    # Quantising keeps order: a larger sample never comes back smaller.
    assert np.all(np.diff(decode(encode(EVERY_SAMPLE)).astype(np.int32)) >= 0)


@pytest.mark.parametrize("law", LAWS)
def test_every_sample_comes_back_within_half_its_segment_step(law: str) -> None:
    encode, decode = _codec(law)
    codes = np.frombuffer(encode(EVERY_SAMPLE), dtype=np.uint8).astype(np.int32)
    x = EVERY_SAMPLE.astype(np.int32)
    error = np.abs(decode(codes.astype(np.uint8).tobytes()).astype(np.int32) - x)
    if law == "ulaw":
        # Segment s (bits 4-6 of the inverted code) steps by 2 << s on G.711's
        # 14-bit scale, 8 << s here: 8 up to 1024.
        step = 8 << ((~codes >> 4) & 7)
        # Above the top decision level (8159 of 14 bits) mu-law clips at its top level.
        clipped = np.abs(x) > 32635
        assert np.all(np.abs(decode(encode(EVERY_SAMPLE[clipped]))) == 32124)
        assert error[clipped].max() == 32768 - 32124
        error, step, x = error[~clipped], step[~clipped], x[~clipped]
    else:
        # Segments 0 and 1 step by 16 here (1 of 12 magnitude bits), segment s >= 2 by 16 << (s - 1): up to 1024.
        segment = ((codes ^ 0x55) >> 4) & 7
        step = 16 << np.maximum(segment - 1, 0)
    assert np.all(error <= step // 2)
    assert step.max() == 1024 and error.max() == 512
    # Small signals keep fine resolution: within 4 (mu-law) or 8 (A-law) near zero.
    assert error[np.abs(x) < 64].max() == (4 if law == "ulaw" else 8)


@pytest.mark.parametrize("law, measured_db", [("ulaw", 37.2), ("alaw", 36.4)])
def test_a_1_khz_tone_at_minus_10_dbfs_keeps_g711s_snr(law: str, measured_db: float) -> None:
    """1004 Hz, the telephone test tone's "1 kHz" (ITU-T O.132): an exact 1000 Hz
    tone repeats every 8 samples at 8 kHz, so it meets only a few code levels and its
    SNR swings with the phase (33-50 dB for either law here); 1004 Hz sweeps them all.
    Measured 37.2 dB (mu-law) and 36.4 dB (A-law), against G.711's nominal 38 dB."""
    encode, decode = _codec(law)
    amplitude = 32767 * 10 ** (-10 / 20)  # -10 dBFS: a full-scale sine is 0 dBFS
    tone = np.round(amplitude * np.sin(2 * np.pi * 1004 * np.arange(8000) / 8000)).astype(np.int16)
    snr = _snr_db(tone, decode(encode(tone)))
    assert snr > 35
    assert snr == pytest.approx(measured_db, abs=0.5)


@pytest.mark.parametrize("law", LAWS)
def test_one_byte_per_sample_any_bytes_decode_and_empty_gives_empty(law: str) -> None:
    encode, decode = _codec(law)
    assert encode(np.zeros(0, dtype=np.int16)) == b""
    assert decode(b"").dtype == np.int16 and len(decode(b"")) == 0
    assert len(encode(np.zeros(160, dtype=np.int16))) == 160
    # An RTP payload may come as any bytes-like object; every byte is a code.
    assert decode(bytearray(ALL_CODES)).tolist() == decode(memoryview(ALL_CODES)).tolist() == decode(ALL_CODES).tolist()
    # A strided view encodes like its copy.
    samples = EVERY_SAMPLE[::7]
    assert encode(samples) == encode(samples.copy())


@pytest.mark.parametrize("law", LAWS)
def test_pcm_of_the_wrong_type_is_refused(law: str) -> None:
    encode, _ = _codec(law)
    for wrong in (np.zeros(160, dtype=np.float32), np.zeros(160, dtype=np.int32), np.zeros((2, 80), dtype=np.int16), b"\x00" * 320):
        with pytest.raises(ValueError):
            encode(wrong)
