"""G.711 mu-law and A-law: the standard's code points, round trips and a tone's SNR."""

from __future__ import annotations

import numpy as np
import pytest

from telebridge.media import g711

ALL_CODES = bytes(range(256))


def _tone(hz: float = 1000, level: float = 0.3, rate: int = 8000) -> np.ndarray:
    return np.round(level * 32767 * np.sin(2 * np.pi * hz * np.arange(rate) / rate)).astype(np.int16)


def _snr(reference: np.ndarray, received: np.ndarray) -> float:
    a, b = reference.astype(float), received.astype(float)
    return float(10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)))


def test_mu_law_code_points_from_the_standard() -> None:
    assert g711.decode_ulaw(bytes([0xFF, 0x7F, 0x00, 0x80])).tolist() == [0, 0, -32124, 32124]
    assert g711.encode_ulaw(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0x80, 0x00])


def test_a_law_code_points_from_the_standard() -> None:
    assert g711.decode_alaw(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert g711.encode_alaw(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0x55, 0xAA, 0x2A])


def test_every_code_word_survives_decode_then_encode() -> None:
    # mu-law's 0x7F is "-0": it comes back as 0xFF, the encoder's zero.
    assert g711.encode_ulaw(g711.decode_ulaw(ALL_CODES)) == ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.encode_alaw(g711.decode_alaw(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_sample_comes_back_within_its_segment_step(law: str) -> None:
    encode, decode = getattr(g711, f"encode_{law}"), getattr(g711, f"decode_{law}")
    x = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    error = np.abs(decode(encode(x)).astype(np.int32) - x.astype(np.int32))
    # The coarsest segment steps by 1024 (mu-law) or 1024 (A-law): half a step, plus clipping at the top.
    assert error[np.abs(x.astype(np.int32)) < 32000].max() <= 512 + 8
    # And small signals keep fine resolution.
    assert error[np.abs(x.astype(np.int32)) < 64].max() <= 8


@pytest.mark.parametrize("law, minimum_db", [("ulaw", 35), ("alaw", 35)])
def test_a_1_khz_tone_keeps_g711s_snr(law: str, minimum_db: float) -> None:
    encode, decode = getattr(g711, f"encode_{law}"), getattr(g711, f"decode_{law}")
    tone = _tone()
    assert _snr(tone, decode(encode(tone))) > minimum_db


def test_empty_in_empty_out() -> None:
    assert g711.encode_ulaw(np.zeros(0, dtype=np.int16)) == b""
    assert len(g711.decode_alaw(b"")) == 0
