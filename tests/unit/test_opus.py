"""Opus encoder and decoder on the system libopus (telebridge.media.opus)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.media import opus
from telebridge.media.opus import (
    OpusDecoder,
    OpusEncoder,
    OpusPacketError,
    OpusUnavailable,
)

# Spectral SNR (tone power within ±4 FFT bins of the peak against everything
# else) of a -10 dBFS tone after one encode/decode at 32 kbit/s, complexity 5,
# measured on libopus 1.3.1: 35 dB from 8 kHz PCM, 42 dB at 16 kHz, 44 dB at
# 48 kHz. Opus is perceptual, not waveform-matching, so 25 dB leaves 10 dB for
# other libopus releases, yet a single 20 ms gap of silence in the second
# analysed here already drags the figure down to 13 dB.
MIN_SNR_DB = 25.0


def tone(rate: int, seconds: float = 1.0, hz: float = 1000.0, dbfs: float = -10.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def frames(pcm: np.ndarray, rate: int) -> list[np.ndarray]:
    n = rate // 50
    return [pcm[i:i + n] for i in range(0, len(pcm) - n + 1, n)]


def peak_and_snr(pcm: np.ndarray, rate: int) -> tuple[float, float]:
    """Frequency of the strongest component and its spectral SNR in dB."""
    power = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    peak = int(np.argmax(power))
    tone_power = power[peak - 4:peak + 5].sum()
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[peak]), float(10 * np.log10(tone_power / (power.sum() - tone_power)))


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_1khz_tone_comes_back_at_1khz_with_snr_above_threshold(rate: int) -> None:
    """Issue 5 acceptance, codec part: 1 kHz ± 10 Hz, SNR above MIN_SNR_DB,
    from the PCM rates G.711 (8 kHz), G.722 (16 kHz) and WebRTC (48 kHz) use."""
    encoder, decoder = OpusEncoder(rate), OpusDecoder(rate)
    decoded = np.concatenate([decoder.decode(encoder.encode(f)) for f in frames(tone(rate), rate)])
    assert decoded.dtype == np.int16 and len(decoded) == rate
    # The first 100 ms hold the codec's delay and its start-up.
    hz, snr = peak_and_snr(decoded[rate // 10:], rate)
    assert abs(hz - 1000) <= 10
    assert snr > MIN_SNR_DB


def test_bytes_and_array_input_encode_alike() -> None:
    """A frame is int16 PCM whether it comes as an array or as bytes."""
    pcm = frames(tone(48000), 48000)[:5]
    by_array, by_bytes = OpusEncoder(), OpusEncoder()
    assert [by_array.encode(f) for f in pcm] == [by_bytes.encode(f.tobytes()) for f in pcm]


def test_lost_frame_is_concealed_with_960_samples_of_the_tone() -> None:
    """RFC 6716 §4.4: packet loss concealment fills the lost 20 ms."""
    encoder, decoder = OpusEncoder(), OpusDecoder()
    for f in frames(tone(48000, 0.2), 48000):
        decoder.decode(encoder.encode(f))
    concealed = decoder.decode(None)
    assert concealed.dtype == np.int16 and len(concealed) == 960
    assert np.abs(concealed).max() > 1000  # carries the tone on, not silence


def test_fec_rebuilds_the_lost_frame_from_the_next_packet() -> None:
    """RFC 6716 §2.1.7: decode(next, fec=True) gives the lost 20 ms, then
    decode(next) gives the next packet's own 20 ms."""
    encoder, decoder = OpusEncoder(fec=True, expected_loss_percent=20), OpusDecoder()
    packets = [encoder.encode(f) for f in frames(tone(48000, 0.5), 48000)]
    out = [decoder.decode(p) for p in packets[:10]]
    out.append(decoder.decode(packets[11], fec=True))  # packets[10] was lost
    out += [decoder.decode(p) for p in packets[11:]]
    assert all(len(f) == 960 for f in out)
    hz, _ = peak_and_snr(np.concatenate(out)[4800:], 48000)
    assert abs(hz - 1000) <= 10


@pytest.mark.parametrize(
    "packet",
    [
        b"\xff" * 10,  # code 3 (RFC 6716 §3.2.5) claiming 63 frames: past 120 ms
        b"\x03",  # code 3 without its frame-count byte
        b"\x0b\xff\xff",  # code 3 CBR, 63 frames again
        b"",  # an empty payload is a broken sender, not a loss
    ],
)
def test_malformed_packet_raises_opus_packet_error_and_decoder_goes_on(packet: bytes) -> None:
    """RFC 6716 §3.4: a packet breaking R1-R7 is rejected."""
    decoder = OpusDecoder()
    with pytest.raises(OpusPacketError) as caught:
        decoder.decode(packet)
    assert caught.value.code == -4
    assert len(decoder.decode(OpusEncoder().encode(bytes(1920)))) == 960


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=1500))
def test_any_bytes_decode_or_raise_opus_packet_error(packet: bytes) -> None:
    """The fuzz invariant: PCM or the core's error, nothing else."""
    try:
        pcm = OpusDecoder().decode(packet)
    except OpusPacketError:
        return
    assert pcm.dtype == np.int16 and len(pcm) % 120 == 0  # whole 2.5 ms steps


def test_encode_rejects_a_frame_of_the_wrong_size_or_type() -> None:
    """Local misuse is a ValueError, apart from the peer's OpusPacketError."""
    encoder = OpusEncoder()
    with pytest.raises(ValueError):
        encoder.encode(np.zeros(959, np.int16))
    with pytest.raises(ValueError):
        encoder.encode(bytes(1921))
    with pytest.raises(ValueError):
        encoder.encode(np.zeros(960, np.float32))


def test_encoder_and_decoder_state_is_per_object() -> None:
    """Two calls' codecs interleaved give what each gives alone."""
    voice = frames(tone(48000, 0.4), 48000)
    other = frames(tone(48000, 0.4, hz=3100.0, dbfs=-3.0), 48000)
    alone, interleaved, meddler = OpusEncoder(), OpusEncoder(), OpusEncoder()
    expected = [alone.encode(f) for f in voice]
    got = []
    for mine, theirs in zip(voice, other):
        meddler.encode(theirs)
        got.append(interleaved.encode(mine))
    assert got == expected

    other_packets = [meddler.encode(f) for f in other]
    solo, shared, other_decoder = OpusDecoder(), OpusDecoder(), OpusDecoder()
    reference = [solo.decode(p) for p in expected]
    for packet, theirs, want in zip(expected, other_packets, reference):
        other_decoder.decode(theirs)
        assert np.array_equal(shared.decode(packet), want)


def test_missing_libopus_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libopus.so.0 the error says which package to install."""
    monkeypatch.setattr(opus, "LIBRARY", "libopus-absent.so.0")
    opus._load.cache_clear()
    try:
        with pytest.raises(OpusUnavailable, match="libopus0"):
            OpusDecoder()
    finally:
        opus._load.cache_clear()
