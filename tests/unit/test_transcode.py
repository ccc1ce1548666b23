"""One direction of transcoding, sans-I/O: real codecs, packets in and out."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from telebridge.media import g711
from telebridge.media.opus import OpusDecoder, OpusEncoder
from telebridge.media.transcode import Transcoder, rtp_payload
from telebridge.media.voice_codecs import make_decoder, make_encoder

OPUS_PT, PCMU_PT, G722_PT, EVENT_PT = 111, 0, 9, 126


def _rtp(pt: int, seq: int, ts: int, payload: bytes, ssrc: int = 0x1234) -> bytearray:
    return bytearray(struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload)


def _tone(hz: float, seconds: float, rate: int, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(level * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _sweep(seconds: float, rate: int, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (low * t + (high - low) * t**2 / (2 * seconds))
    return np.round(0.3 * 32767 * np.sin(phase)).astype(np.int16)


def _opus_packets(pcm48: np.ndarray) -> list[bytearray]:
    encoder = OpusEncoder(48000, bitrate=48000)
    return [_rtp(OPUS_PT, n, n * 960, encoder.encode(pcm48[n * 960 : (n + 1) * 960])) for n in range(len(pcm48) // 960)]


def _run(transcoder: Transcoder, packets: list[bytearray], frame: float = 0.02) -> list[bytearray]:
    """Feed packets at their pace, run the playout clock, collect what comes out."""
    out: list[bytearray] = []
    transcoder.on_packet = lambda packet, now: out.append(packet)
    for n, packet in enumerate(packets):
        now = n * frame
        transcoder.push(packet, now)
        while (due := transcoder.get_timer()) is not None and due <= now:
            transcoder.handle_timer(due)
    end = len(packets) * frame + 1.0
    while (due := transcoder.get_timer()) is not None and due <= end:
        transcoder.handle_timer(due)
    return out


def _opus_to_pcmu(ptime_ms: int = 20) -> Transcoder:
    return Transcoder(make_decoder("opus", 8000), make_encoder("pcmu", 8000, ptime_ms), OPUS_PT, PCMU_PT, 48000, 8000, EVENT_PT)


def _peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(float) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def _tracking_snr(pcm: np.ndarray, rate: int, seconds: float, low: float = 300.0, high: float = 3400.0) -> float:
    """SNR (dB) of a linear sweep: in each 20 ms window, the power within 150 Hz of the
    sweep's frequency then against all the rest (noise, distortion, aliases, clicks),
    at the codec delay (0-200 ms) that fits best. Phase-blind, as the ear is: a
    perceptual codec like Opus keeps the sound, not the waveform."""
    n = int(0.02 * rate)
    window = np.hanning(n)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    starts = range(int(0.1 * rate), int((seconds - 0.25) * rate), n)
    spectra = [np.abs(np.fft.rfft(pcm[s : s + n].astype(float) * window)) ** 2 for s in starts]
    best = -np.inf
    for delay in np.arange(0, 0.2, 0.005):
        tone = rest = 0.0
        for start, spectrum in zip(starts, spectra):
            expected = low + (high - low) * ((start + n / 2) / rate - delay) / seconds
            near = np.abs(freqs - expected) <= 150
            tone += spectrum[near].sum()
            rest += spectrum[~near].sum()
        best = max(best, 10 * np.log10(tone / rest))
    return float(best)


def test_opus_becomes_pcmu_at_the_right_pitch_with_timestamps_that_count_samples() -> None:
    out = _run(_opus_to_pcmu(), _opus_packets(_tone(1000, 2.0, 48000)))
    assert len(out) >= 95
    assert {p[1] & 0x7F for p in out} == {PCMU_PT}
    assert out[0][1] & 0x80 and not any(p[1] & 0x80 for p in out[1:])  # marker on the first only
    stamps = [struct.unpack_from("!I", p, 4)[0] for p in out]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(stamps, stamps[1:]))
    pcm = np.concatenate([g711.decode_ulaw(bytes(p[12:])) for p in out])
    assert abs(_peak_hz(pcm[800:], 8000) - 1000) < 10


def test_a_30_ms_packet_time_on_the_sip_side_is_repacketised() -> None:
    out = _run(_opus_to_pcmu(ptime_ms=30), _opus_packets(_tone(1000, 1.2, 48000)))
    assert {len(p) - 12 for p in out} == {240}
    stamps = [struct.unpack_from("!I", p, 4)[0] for p in out]
    assert all((b - a) & 0xFFFFFFFF == 240 for a, b in zip(stamps, stamps[1:]))


def test_pcmu_becomes_opus_at_the_browser_clock() -> None:
    pcm = _tone(1000, 2.0, 8000)
    packets = [_rtp(PCMU_PT, n, n * 160, g711.encode_ulaw(pcm[n * 160 : (n + 1) * 160])) for n in range(100)]
    transcoder = Transcoder(make_decoder("pcmu", 8000), make_encoder("opus", 8000), PCMU_PT, OPUS_PT, 8000, 48000)
    out = _run(transcoder, packets)
    stamps = [struct.unpack_from("!I", p, 4)[0] for p in out]
    assert all((b - a) & 0xFFFFFFFF == 960 for a, b in zip(stamps, stamps[1:]))
    decoder = OpusDecoder(48000)
    heard = np.concatenate([decoder.decode(bytes(p[12:])) for p in out])
    assert abs(_peak_hz(heard[4800:], 48000) - 1000) < 10


def test_a_sweep_through_opus_pcmu_and_back_keeps_its_shape() -> None:
    """Opus -> PCMU -> Opus, the path a browser's voice takes to a G.711 phone and a G.711
    phone's voice back to it, on a 300-3400 Hz sweep: measured 35 dB at PCMU and 35 dB back
    in Opus; under 25 dB something is broken (clicks, a wrong clock rate, aliasing). Nothing
    above 4 kHz comes back: G.711's band ends there and no image of the sweep may appear."""
    sweep = _sweep(3.0, 48000)
    to_pcmu = _run(_opus_to_pcmu(), _opus_packets(sweep))
    narrowband = np.concatenate([g711.decode_ulaw(bytes(p[12:])) for p in to_pcmu])
    assert _tracking_snr(narrowband, 8000, 3.0) > 25
    back = Transcoder(make_decoder("pcmu", 8000), make_encoder("opus", 8000), PCMU_PT, OPUS_PT, 8000, 48000)
    to_opus = _run(back, to_pcmu)
    decoder = OpusDecoder(48000)
    heard = np.concatenate([decoder.decode(bytes(p[12:])) for p in to_opus])
    assert _tracking_snr(heard, 48000, 3.0) > 25
    spectrum = np.abs(np.fft.rfft(heard.astype(float))) ** 2
    freqs = np.fft.rfftfreq(len(heard), 1 / 48000)
    assert 10 * np.log10(spectrum[freqs > 4500].sum() / spectrum.sum()) < -40


def test_a_lost_packet_is_concealed_and_the_stream_keeps_its_pace() -> None:
    packets = _opus_packets(_tone(1000, 1.0, 48000))
    del packets[20]
    transcoder = _opus_to_pcmu()
    out = _run(transcoder, packets)
    assert transcoder.buffer.stats.concealed >= 1
    pcm = np.concatenate([g711.decode_ulaw(bytes(p[12:])) for p in out])
    assert len(out) >= 49
    # The concealed frame is not silence: the tone goes on through the gap.
    gap = pcm[20 * 160 : 22 * 160].astype(float)
    assert np.sqrt(np.mean(gap**2)) > 1000


def test_garbage_and_unknown_payload_types_change_nothing() -> None:
    transcoder = _opus_to_pcmu()
    packets = _opus_packets(_tone(1000, 0.4, 48000))
    packets[5] = _rtp(OPUS_PT, 5, 5 * 960, b"\xff\xff\xff\xff\xff")  # not Opus
    packets.insert(3, _rtp(13, 99, 0, b"\x40"))  # comfort noise
    packets.insert(4, bytearray(b"\x80\x00\x00"))  # truncated
    out = _run(transcoder, packets)
    assert transcoder.stats.dropped == 2
    assert len(out) >= 19


def test_an_rfc_4733_event_is_reported_once_with_its_duration() -> None:
    digits: list[tuple[str, int]] = []
    transcoder = _opus_to_pcmu()
    transcoder.on_digit = lambda digit, ms: digits.append((digit, ms))
    for n, (end, duration) in enumerate([(False, 960), (False, 1920), (True, 4800), (True, 4800), (True, 4800)]):
        transcoder.push(_rtp(EVENT_PT, n, 48000, struct.pack("!BBH", 11, (0x80 if end else 0) | 10, duration)), n * 0.02)
    transcoder.push(_rtp(EVENT_PT, 9, 96000, struct.pack("!BBH", 1, 0x80 | 10, 2400)), 0.5)
    assert digits == [("#", 100), ("1", 50)]


@pytest.mark.parametrize(
    "packet, payload",
    [
        (b"\x80\x00" + bytes(10) + b"abc", b"abc"),
        (b"\x82\x00" + bytes(10) + bytes(8) + b"abc", b"abc"),  # two CSRCs
        (b"\x90\x00" + bytes(10) + b"\xbe\xde\x00\x01" + bytes(4) + b"abc", b"abc"),  # extension
        (b"\xa0\x00" + bytes(10) + b"abc\x00\x02", b"abc"),  # padding
        (b"\x80\x00" + bytes(5), None),
        (b"\x90\x00" + bytes(10) + b"\xbe\xde\x00\x09", None),
        (b"\xa0\x00" + bytes(10) + b"\x09", None),
    ],
)
def test_rtp_payload_is_total(packet: bytes, payload: bytes | None) -> None:
    assert rtp_payload(packet) == payload


def test_a_codec_the_far_side_takes_as_it_is_is_relayed_not_transcoded() -> None:
    """Chrome may send PCMU (the SIP offer's first codec) though its answer said Opus:
    such packets go on as they are, renumbered, and nothing is decoded."""
    transcoder = Transcoder(
        make_decoder("opus", 8000), make_encoder("pcmu", 8000), OPUS_PT, PCMU_PT, 48000, 8000, passthrough={18: 0}
    )
    out: list[bytearray] = []
    transcoder.on_packet = lambda packet, now: out.append(packet)
    transcoder.push(_rtp(18, 1, 160, b"\xff" * 160), 0.0)
    assert len(out) == 1 and out[0][1] & 0x7F == 0 and out[0][12:] == b"\xff" * 160
    assert transcoder.stats.passed == 1 and transcoder.stats.frames_in == 0
