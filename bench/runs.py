"""Several runs of the benchmark as one report: every figure is the median of the
runs, shown with its spread (the least and the most of them), and a target is met
only when it was met in every run."""

from __future__ import annotations

import statistics
from typing import Any


class _Spread:
    """A median that prints with the spread of the runs it comes from."""

    low: Any
    high: Any
    count: int

    def __format__(self, spec: str) -> str:
        middle = format(self.value(), spec)  # type: ignore[attr-defined]
        if self.low == self.high or self.count < 2:
            return middle
        return f"{middle} ({format(self.low, spec)} to {format(self.high, spec)})"

    def __str__(self) -> str:
        return format(self, "")


class FloatSpread(_Spread, float):
    def value(self) -> float:
        return float(self)


class IntSpread(_Spread, int):
    def value(self) -> int:
        return int(self)


def spread(values: list[Any]) -> Any:
    """The median of numbers (as a figure that prints its spread); anything else:
    the first run's."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers or len(numbers) != len(values):
        return values[0]
    middle = statistics.median(numbers)
    whole = all(isinstance(v, int) for v in numbers) and middle == int(middle)
    out: _Spread = IntSpread(int(middle)) if whole else FloatSpread(round(middle, 6))
    out.low, out.high, out.count = min(numbers), max(numbers), len(numbers)
    return out


def combine(runs: list[Any]) -> Any:
    """The runs' results merged leaf by leaf (the first run's shape)."""
    first = runs[0]
    if isinstance(first, dict):
        return {
            key: combine([r[key] for r in runs if isinstance(r, dict) and key in r])
            for key in first
        }
    return spread(runs)


def every(checks: list[list[tuple[str, bool | None, str]]]) -> list[tuple[str, bool | None, str]]:
    """Targets over several runs: met only if met in every run; the figures of each."""
    out = []
    for i, (name, _, _) in enumerate(checks[0]):
        rows = [run[i] for run in checks if i < len(run) and run[i][0] == name]
        mets = [met for _, met, _ in rows]
        met = None if None in mets else all(mets) and len(rows) == len(checks)
        figures = " · ".join(f for _, _, f in rows) if len(rows) > 1 else rows[0][2]
        out.append((name, met, figures))
    return out
