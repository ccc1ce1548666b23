"""Tone WAV files: write a sine for a peer to play, and find the tone in a recording.

Real peers (baresip) record what they sent and received as WAV files; a
test asserts what a listener would notice: which tone is there, and that
it is not silence. The frequency is the peak of a Hann-windowed FFT,
refined by fitting a parabola through the log magnitudes of the peak bin
and its two neighbours, so one second of audio resolves well under 1 Hz.
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy


@dataclass(frozen=True, slots=True)
class Tone:
    """What a recording holds: its dominant frequency (Hz) and its RMS level (full scale = 1.0)."""

    hz: float
    rms: float
    seconds: float


def write_tone(path: Path, hz: float, seconds: float, rate: int = 8000, amplitude: float = 0.5) -> Path:
    """A mono 16-bit sine WAV of ``seconds`` at ``rate`` samples per second."""
    t = numpy.arange(int(seconds * rate)) / rate
    samples = numpy.round(amplitude * 32767 * numpy.sin(2 * numpy.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def read_samples(path: Path) -> tuple[numpy.ndarray, int]:
    """The first channel as floats in [-1, 1], and the sample rate.

    Reads the RIFF chunks itself: libsndfile (baresip's ``sndfile``) fills
    in the data chunk's size only when the file is closed, so a recording
    of a call still running declares no data; everything after the data
    chunk's header is then taken as samples.
    """
    raw = path.read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a WAV file")
    position, fmt = 12, None
    while position + 8 <= len(raw):
        chunk, size = raw[position : position + 4], struct.unpack_from("<I", raw, position + 4)[0]
        body = position + 8
        if chunk == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", raw, body)
        elif chunk == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data before fmt")
            end = len(raw) if size == 0 or body + size > len(raw) else body + size
            return _decode(raw[body:end], fmt)
        position = body + size + (size & 1)
    raise ValueError(f"{path} has no data chunk")


def seconds_of(path: Path) -> float:
    """Seconds of audio in a recording that may still be written (0 until its header is out)."""
    try:
        samples, rate = read_samples(path)
    except (OSError, ValueError, struct.error):
        return 0.0
    return len(samples) / rate


def _decode(data: bytes, fmt: tuple[int, ...]) -> tuple[numpy.ndarray, int]:
    encoding, channels, rate, _, _, bits = fmt
    if encoding == 1 and bits == 16:
        samples = numpy.frombuffer(data[: len(data) - len(data) % 2], "<i2").astype(numpy.float64) / 32768
    elif encoding == 3 and bits == 32:
        samples = numpy.frombuffer(data[: len(data) - len(data) % 4], "<f4").astype(numpy.float64)
    else:
        raise ValueError(f"unsupported WAV encoding {encoding} with {bits} bits")
    return samples[: len(samples) - len(samples) % channels][::channels], rate


def dominant_tone(path: Path, start: float = 0.0, end: float | None = None) -> Tone:
    """The tone in ``path`` between ``start`` and ``end`` seconds (negative: from the end)."""
    samples, rate = read_samples(path)
    first = _index(start, len(samples), rate)
    last = len(samples) if end is None else _index(end, len(samples), rate)
    return tone_of(samples[first:last], rate)


def _index(seconds: float, length: int, rate: int) -> int:
    index = int(seconds * rate)
    return max(0, min(length, index if index >= 0 else length + index))


def tone_of(samples: numpy.ndarray, rate: int) -> Tone:
    """Dominant frequency and RMS of a block of samples."""
    seconds = len(samples) / rate
    if len(samples) < 16:
        return Tone(0.0, 0.0, seconds)
    rms = float(numpy.sqrt(numpy.mean(samples**2)))
    magnitude = numpy.abs(numpy.fft.rfft((samples - samples.mean()) * numpy.hanning(len(samples))))
    peak = int(numpy.argmax(magnitude[1:-1])) + 1
    a, b, c = numpy.log(magnitude[peak - 1 : peak + 2] + 1e-12)
    curve = a - 2 * b + c
    offset = 0.5 * (a - c) / curve if curve < 0 else 0.0
    return Tone(float((peak + offset) * rate / len(samples)), rms, seconds)


def tone_snr(samples: numpy.ndarray, rate: int, hz: float, width_hz: float = 20.0) -> float:
    """Signal-to-noise ratio (dB) of the tone at ``hz``: the power within ``width_hz``
    of it against everything else (noise, distortion, aliases), Hann-windowed."""
    spectrum = numpy.abs(numpy.fft.rfft((samples - samples.mean()) * numpy.hanning(len(samples)))) ** 2
    freqs = numpy.fft.rfftfreq(len(samples), 1 / rate)
    near = numpy.abs(freqs - hz) <= width_hz
    return float(10 * numpy.log10(spectrum[near].sum() / (spectrum[~near][1:].sum() + 1e-30)))
