"""In-band DTMF detection (telebridge.media.dtmf_detect)."""

from __future__ import annotations

import numpy as np
import pytest

from telebridge.media.dtmf_detect import BLOCK, COLUMNS, HOP, KEYS, ROWS, DigitEvent, DtmfDetector

RATE = 8000
FRAME = 160
# A full-scale sine is +3.14 dBm0 on G.711's scale.
DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)
ALL_DIGITS = "0123456789*#ABCD"
# Close to 2**32, so that the timestamps wrap during the tests.
START_TIMESTAMP = 0xFFFFFFFF - 3000


def amplitude(dbm0: float) -> float:
    return DBM0_PEAK * 10 ** (dbm0 / 20)


def samples(ms: float) -> int:
    return int(round(RATE * ms / 1000))


def key_tones(digit: str) -> tuple[float, float]:
    for r, keys in enumerate(KEYS):
        if digit in keys:
            return ROWS[r], COLUMNS[keys.index(digit)]
    raise KeyError(digit)


def dual_tone(row: float, column: float, ms: float, row_dbm0: float = -10.0, column_dbm0: float = -10.0) -> np.ndarray:
    t = np.arange(samples(ms)) / RATE
    return amplitude(row_dbm0) * np.sin(2 * np.pi * row * t) + amplitude(column_dbm0) * np.sin(2 * np.pi * column * t)


def digits(sequence: str, on_ms: float = 60, off_ms: float = 60, dbm0: float = -10.0) -> np.ndarray:
    """The digits as tones, each followed by a pause; starts with a pause too."""
    parts = [np.zeros(samples(off_ms))]
    for digit in sequence:
        parts += [dual_tone(*key_tones(digit), on_ms, dbm0, dbm0), np.zeros(samples(off_ms))]
    return np.concatenate(parts)


def pcm16(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


def detect(signal: np.ndarray, frame: int = FRAME, tail_ms: float = 100) -> list[DigitEvent]:
    """Events for the signal fed in frames, with silence after it to let the last digit end."""
    pcm = pcm16(np.concatenate((signal, np.zeros(samples(tail_ms)))))
    detector, events = DtmfDetector(), []
    for i in range(0, len(pcm), frame):
        events += detector.process(pcm[i:i + frame], (START_TIMESTAMP + i) & 0xFFFFFFFF)
    return events


def presses(events: list[DigitEvent]) -> str:
    """The digits, checking that each start is followed by its own end."""
    assert [e.end for e in events] == [False, True] * (len(events) // 2)
    for start, end in zip(events[::2], events[1::2]):
        assert (start.digit, start.timestamp) == (end.digit, end.timestamp)
    return "".join(e.digit for e in events[::2])


def elapsed(timestamp: int) -> int:
    """Samples from the start of the signal to an event's timestamp."""
    return (timestamp - START_TIMESTAMP) & 0xFFFFFFFF


def duration_ok(event: DigitEvent, ms: float) -> bool:
    # Blocks overlap the tone's edges: 4 ms short to 10 ms long, measured.
    return -5 <= event.duration_ms - ms <= 12


def test_every_digit_once_and_in_order() -> None:
    events = detect(digits(ALL_DIGITS))
    assert presses(events) == ALL_DIGITS
    for i, (start, end) in enumerate(zip(events[::2], events[1::2])):
        onset = samples(60 + i * 120)
        # The first block to hold the digit starts within 5 ms of the onset.
        assert abs(elapsed(start.timestamp) - onset) <= 40
        assert duration_ok(end, 60)


def test_sequence() -> None:
    assert presses(detect(digits("159#*0"))) == "159#*0"


@pytest.mark.parametrize("frame", [7, 80, 160, 240, 1000])
def test_any_frame_size_gives_the_same_events(frame: int) -> None:
    signal = digits("159#*0")
    assert detect(signal, frame) == detect(signal)


def tone_at(digit: str, offset: int, ms: float) -> np.ndarray:
    return np.concatenate((np.zeros(BLOCK * 2 + offset), dual_tone(*key_tones(digit), ms), np.zeros(400)))


def test_a_20_ms_burst_is_not_a_digit() -> None:
    # Every digit, at every alignment against the blocks (they repeat every HOP).
    for digit in ALL_DIGITS:
        for offset in range(0, HOP, 3):
            assert detect(tone_at(digit, offset, 20)) == [], (digit, offset)


def test_a_40_ms_tone_is_a_digit() -> None:
    for digit in ALL_DIGITS:
        for offset in range(0, HOP, 3):
            assert presses(detect(tone_at(digit, offset, 40))) == digit, offset


def test_one_press_held_500_ms() -> None:
    events = detect(digits("8", on_ms=500))
    assert presses(events) == "8"
    assert duration_ok(events[1], 500)


def test_a_one_block_dropout_does_not_split_a_press() -> None:
    for digit in ALL_DIGITS:
        for offset in range(0, HOP, 5):
            tone = dual_tone(*key_tones(digit), 300)
            tone[1000 + offset:1000 + offset + BLOCK] = 0
            events = detect(np.concatenate((np.zeros(400), tone)))
            assert presses(events) == digit, offset
            assert duration_ok(events[1], 300)


def test_the_same_digit_twice_is_two_presses() -> None:
    assert presses(detect(digits("77"))) == "77"


def test_a_single_tone_is_not_a_digit() -> None:
    t = np.arange(RATE) / RATE
    assert detect(amplitude(-5) * np.sin(2 * np.pi * 1000 * t)) == []
    # Nor a row or a column frequency alone.
    assert detect(amplitude(-5) * np.sin(2 * np.pi * ROWS[1] * t)) == []
    assert detect(amplitude(-5) * np.sin(2 * np.pi * COLUMNS[2] * t)) == []


def test_white_noise_is_not_a_digit() -> None:
    noise = np.random.default_rng(3).normal(0, amplitude(-10) / np.sqrt(2), RATE * 3)
    assert detect(noise) == []


# Vowels as (formant Hz, bandwidth Hz): /a/, /i/, /u/, /o/, /ae/, and one with
# its formants on a row and a column frequency, the worst case for talk-off.
VOWELS = [
    [(730, 90), (1090, 110), (2440, 170)],
    [(270, 60), (2290, 100), (3010, 120)],
    [(300, 60), (870, 80), (2240, 120)],
    [(570, 70), (840, 80), (2410, 120)],
    [(660, 80), (1720, 100), (2410, 120)],
    [(750, 80), (1210, 90), (2500, 120)],
]


def vowel(formants: list[tuple[int, int]], f0: float = 150.0, seconds: float = 1.0, dbm0: float = -10.0) -> np.ndarray:
    """Harmonics of f0 shaped by second-order resonances at the formants."""
    t = np.arange(int(RATE * seconds)) / RATE
    phases = np.random.default_rng(int(f0)).uniform(0, 2 * np.pi, 64)
    signal = np.zeros_like(t)
    for k in range(1, int(3800 / f0) + 1):
        f = k * f0
        gain = sum(1 / np.hypot(1 - (f / fc) ** 2, f * bw / fc**2) for fc, bw in formants)
        signal += gain * np.sin(2 * np.pi * f * t + phases[k])
    return signal * amplitude(dbm0) / np.sqrt(2 * np.mean(signal**2))


@pytest.mark.parametrize("formants", VOWELS)
def test_speech_like_signal_is_not_a_digit(formants: list[tuple[int, int]]) -> None:
    assert detect(vowel(formants)) == []
    assert detect(vowel(formants, f0=120.0, dbm0=-3.0)) == []


def test_vowel_tuned_onto_a_digit_is_not_a_digit() -> None:
    # f0 = 941 / 4 puts harmonics on 941 Hz and 14 Hz from 1633 Hz, the
    # formants on both: the pair takes 56 % of the power, still too little.
    assert detect(vowel([(941, 80), (1633, 90), (2500, 120)], f0=941 / 4)) == []


@pytest.mark.parametrize("row_db, column_db", [(0, -12), (-12, 0)])
def test_twist_of_12_db_is_rejected(row_db: float, column_db: float) -> None:
    row, column = key_tones("6")
    signal = np.concatenate((np.zeros(400), dual_tone(row, column, 200, -10 + row_db, -10 + column_db)))
    assert detect(signal) == []


@pytest.mark.parametrize("row_db, column_db", [(0, -6), (-3, 0)])
def test_twist_within_limits_is_accepted(row_db: float, column_db: float) -> None:
    row, column = key_tones("6")
    signal = np.concatenate((np.zeros(400), dual_tone(row, column, 200, -10 + row_db, -10 + column_db)))
    assert presses(detect(signal)) == "6"


def test_level_limits() -> None:
    assert presses(detect(digits(ALL_DIGITS, dbm0=-25))) == ALL_DIGITS
    assert detect(digits(ALL_DIGITS, dbm0=-35)) == []


@pytest.mark.parametrize("deviation", [0.985, 1.015])
def test_frequencies_off_by_1_5_percent_are_accepted(deviation: float) -> None:
    parts = [np.zeros(480)]
    for digit in "1590D":
        row, column = key_tones(digit)
        parts += [dual_tone(row * deviation, column * deviation, 60), np.zeros(480)]
    assert presses(detect(np.concatenate(parts))) == "1590D"


def mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """G.711 mu-law: a sign, a 3-bit segment and a 4-bit step, inverted."""
    x = pcm.astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    segment = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    step = (magnitude >> (segment + 3)) & 0x0F
    return (~(sign | (segment << 4) | step) & 0xFF).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    c = ~codes.astype(np.int32) & 0xFF
    magnitude = ((((c & 0x0F) << 3) + 0x84) << ((c >> 4) & 0x07)) - 0x84
    return np.where(c & 0x80, -magnitude, magnitude).astype(np.int16)


def test_local_mulaw_codec() -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    decoded = mulaw_decode(mulaw_encode(pcm)).astype(np.int32)
    assert decoded.max() == 32124 and decoded.min() == -32124
    small = np.abs(pcm.astype(np.int32)) < 30000
    # The step grows with the segment: a sixteenth of the magnitude at most.
    assert np.all(np.abs(decoded[small] - pcm[small]) <= np.abs(pcm[small]) / 16 + 4)


@pytest.mark.parametrize("dbm0", [-10, -25])
def test_digits_survive_mulaw(dbm0: float) -> None:
    coded = mulaw_decode(mulaw_encode(pcm16(digits(ALL_DIGITS, dbm0=dbm0)))).astype(np.float64)
    assert presses(detect(coded)) == ALL_DIGITS


def test_rejects_pcm_that_is_not_int16() -> None:
    with pytest.raises(ValueError):
        DtmfDetector().process(np.zeros(160, np.float64), 0)
