"""CPU time per call for the codec benchmarks (bench/opus_bindings.py, bench/g7xx_codecs.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
