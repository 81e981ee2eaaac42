"""Fakes for tests, shipped with the library so users' own tests can use them too."""

from __future__ import annotations

from collections.abc import Sequence

from sesame.engine import Action, Engine, Spent
from sesame.firewall.memory import MemoryGate

__all__ = ["FakeClock", "MemoryGate", "recorded"]


def recorded(engine: Engine, actions: Sequence[Action], now: float) -> list[Action]:
    """``actions`` as a daemon whose state directory takes every key carries them out:
    each spent key is followed by what its admission opens (:meth:`Engine.admit`)."""
    out: list[Action] = []
    for action in actions:
        out.append(action)
        if isinstance(action, Spent) and action.admit is not None:
            out += engine.admit(action.admit, now)
    return out


class FakeClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``advance`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
