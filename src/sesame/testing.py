"""Fakes for tests, shipped with the library so users' own tests can use them too."""

from __future__ import annotations

from sesame.firewall.memory import MemoryGate

__all__ = ["FakeClock", "MemoryGate"]


class FakeClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``advance`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
