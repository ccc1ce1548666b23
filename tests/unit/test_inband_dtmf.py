"""In-band DTMF in the SIP side's G.711: tones in, digits out, each once and in order."""

from __future__ import annotations

import struct

import numpy as np

from telebridge.media import g711
from telebridge.media.inband_dtmf import InbandDigits

RATE = 8000
FREQS = {
    "1": (697, 1209), "5": (770, 1336), "9": (852, 1477), "#": (941, 1477), "*": (941, 1209), "0": (941, 1336),
}


def _keypresses(digits: str, on: float = 0.1, off: float = 0.1) -> np.ndarray:
    """Each digit's tone pair at about -10 dBm0 per tone for ``on`` seconds, then silence."""
    parts = []
    t = np.arange(int(on * RATE)) / RATE
    for digit in digits:
        low, high = FREQS[digit]
        parts.append(0.15 * 32767 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)))
        parts.append(np.zeros(int(off * RATE)))
    return np.round(np.concatenate(parts)).astype(np.int16)


def _packets(pcm: np.ndarray, pt: int, encode=g711.encode_ulaw) -> list[bytearray]:
    return [
        bytearray(struct.pack("!BBHII", 0x80, pt, n, n * 160, 5) + encode(pcm[n * 160 : (n + 1) * 160]))
        for n in range(len(pcm) // 160)
    ]


def test_tones_in_pcmu_become_each_digit_once_in_order_with_its_duration() -> None:
    detector = InbandDigits({0: "pcmu", 101: "telephone-event"})
    found = [d for p in _packets(_keypresses("159#*0"), 0) for d in detector.packet(p)]
    assert "".join(d for d, _ in found) == "159#*0"
    assert all(80 <= ms <= 130 for _, ms in found), found


def test_pcma_works_too_and_other_payload_types_are_not_looked_at() -> None:
    detector = InbandDigits({8: "pcma"})
    assert [d for p in _packets(_keypresses("5"), 8, g711.encode_alaw) for d, _ in detector.packet(p)] == ["5"]
    assert [d for p in _packets(_keypresses("5"), 0) for d, _ in detector.packet(p)] == []


def test_a_stream_without_g711_is_not_usable_and_garbage_changes_nothing() -> None:
    assert not InbandDigits({111: "opus"}).usable
    detector = InbandDigits({0: "pcmu"})
    assert detector.packet(bytearray(b"\x80\x00\x00")) == []
    assert detector.packet(bytearray(b"\x80\x00" + bytes(10))) == []
