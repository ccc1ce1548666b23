"""Counters and gauges, rendered in the Prometheus text format.

Kamailio's lesson: count everything that is dropped. Counters are plain
dict entries keyed by (name, sorted labels), cheap enough to bump on
signalling paths; the media hot path keeps its own integer fields instead.
"""

from __future__ import annotations

from typing import Callable

LabelKey = tuple[str, tuple[tuple[str, str], ...]]


class Counters:
    """Monotonic counters plus gauges read on demand."""

    def __init__(self) -> None:
        self._values: dict[LabelKey, float] = {}
        self._help: dict[str, str] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` with ``labels``."""
        key = (name, tuple(sorted(labels.items())))
        self._values[key] = self._values.get(key, 0) + amount

    def get(self, name: str, **labels: str) -> float:
        """The current value (0 if never bumped)."""
        return self._values.get((name, tuple(sorted(labels.items()))), 0)

    def total(self, name: str) -> float:
        """The sum over every label set of ``name``."""
        return sum(v for (n, _), v in self._values.items() if n == name)

    def describe(self, name: str, text: str) -> None:
        """Set the HELP text of a counter."""
        self._help[name] = text

    def gauge(self, name: str, text: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read when rendering."""
        self._gauges[name] = (text, read)

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(self._values.items()):
            if name not in seen:
                seen.add(name)
                if name in self._help:
                    lines.append(f"# HELP {name} {self._help[name]}")
                lines.append(f"# TYPE {name} counter")
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
        for name, (text, read) in sorted(self._gauges.items()):
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {read():g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
