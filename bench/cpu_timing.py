"""What the codec benchmarks share (bench/opus_bindings.py, bench/g7xx_codecs.py,
bench/transcode.py): a voice-like test signal, CPU time per call, the command line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: One candidate: a call, and the items it is called on in turn.
Case = tuple[Callable[[Any], object], list[Any]]


def cpu_us(cases: list[Case], repeats: int) -> list[float]:
    """Best-of-`repeats` CPU µs per call for each (call, items) case, after a warm-up.

    Every repeat runs every case once, in turn, so that load from other
    processes on this shared machine falls on all candidates alike.
    """
    for call, items in cases:
        for item in items[:50]:
            call(item)
    best = [float("inf")] * len(cases)
    for _ in range(repeats):
        for index, (call, items) in enumerate(cases):
            start = time.process_time()
            for item in items:
                call(item)
            best[index] = min(best[index], time.process_time() - start)
    return [b / len(items) * 1e6 for b, (_, items) in zip(best, cases)]


def voice_frames(rate: int, frames: int) -> list[np.ndarray]:
    """Voice-like 20 ms int16 frames: a gliding 120-240 Hz harmonic series up to
    the band's top, a syllable envelope and a little noise, so that encoders
    work as on speech."""
    n = rate // 50
    t = np.arange(frames * n) / rate
    pitch = 180 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 40) if k * 240 < rate / 2)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(5).normal(0, 0.02, t.size)
    pcm = (9000 * (voice * envelope + noise)).clip(-32768, 32767).astype(np.int16)
    return [pcm[i * n : (i + 1) * n].copy() for i in range(frames)]


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def frame_arguments(description: str | None = None) -> argparse.Namespace:
    """--frames and --repeats, as every codec benchmark takes them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--frames", type=int, default=3000, help="20 ms frames per run (3000 = 1 min)")
    parser.add_argument("--repeats", type=int, default=7)
    return parser.parse_args()
