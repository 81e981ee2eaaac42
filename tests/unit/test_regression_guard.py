"""The engine's speed, guarded in relative terms (see bench/guard.py): a workload's time
over a calibration loop's, against the stored baseline; only a large regression fails."""

from __future__ import annotations

from bench import guard


def test_no_large_regression_against_the_baseline():
    stored = guard.baseline()
    ratios = guard.measure()
    assert set(ratios) == set(stored)
    slower = {n: r / stored[n] for n, r in ratios.items() if r > guard.LIMIT * stored[n]}
    if slower:
        # Measure once more before failing: a busy machine can slow one round.
        again = guard.measure()
        slower = {n: r / stored[n] for n, r in again.items() if r > guard.LIMIT * stored[n]}
    assert not slower, f"slower than {guard.LIMIT}x the baseline: {slower}"


def test_the_guard_would_catch_a_regression(monkeypatch):
    """A deliberately slowed engine trips the guard (the guard can fail)."""
    from sesame.engine import sequences

    original = sequences.step

    def slow_step(*args, **kwargs):
        for _ in range(5000):
            pass
        return original(*args, **kwargs)

    monkeypatch.setattr(sequences, "step", slow_step)
    ratios = guard.measure()
    assert ratios["knocks"] > guard.LIMIT * guard.baseline()["knocks"]
