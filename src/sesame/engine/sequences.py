"""Knock sequence matching per source address, with bounded memory.

Every transition lives in :func:`step`, one pure function over one attempt:

=====================================  ==========================================
the packet, for an attempt at stage k  what happens
=====================================  ==========================================
TCP flags the door does not take, or   nothing changes (knockd's TCPFlags, Target)
sent to another address than its
target
attempt older than its seq_timeout     the attempt is gone; the packet is judged
                                       as if there were none
the next port of the sequence          advance to stage k+1 (complete at the end)
the port just matched (a duplicate,    nothing changes
as some phone apps send)
any other knock port                   the attempt is reset; if the packet is the
                                       first port, a new attempt starts
(no attempt) the first port            a new attempt at stage 1
(no attempt) anything else             nothing
=====================================  ==========================================

Only knock ports ever reach the engine: the kernel drops everything else and marks
sources that touch other ports as scanners, so they cannot complete a sequence.

Memory is bounded: at most ``max_sources`` sources hold attempts at once. Sources
are kept in least-recently-active order; when the table is full, expired sources
are dropped first, then the least recently active one is evicted (counted).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sesame.basics import SYN, SYN_ONLY, Address, Port


@dataclass(frozen=True, slots=True)
class Target:
    """What a completed sequence means: open or close ``door`` (for ``user``, with a
    one-time sequence of time step ``step``)."""

    door: str
    kind: str = "open"  # or "close"
    user: str = ""
    step: int = 0


@dataclass(frozen=True, slots=True)
class Pattern:
    """One sequence to match and what completing it means."""

    target: Target
    ports: tuple[Port, ...]
    timeout: float
    flags: tuple[int, int] = SYN_ONLY  # TCP flags that must be set, that must be clear
    to: Address | None = None  # only knocks sent to this address count

    def sees(self, port: Port, flags: int, destination: Address | None) -> bool:
        must, must_not = self.flags
        if port.proto == "tcp" and (flags & must != must or flags & must_not):
            return False
        return self.to is None or destination == self.to


# An attempt is (stage, started). Stage 0 means no attempt.
NO_ATTEMPT: tuple[int, float] = (0, 0.0)


def step(
    pattern: Pattern,
    attempt: tuple[int, float],
    port: Port,
    now: float,
    flags: int = SYN,
    destination: Address | None = None,
) -> tuple[tuple[int, float], bool]:
    """One transition. Returns the new attempt and whether the sequence completed."""
    if not pattern.sees(port, flags, destination):
        return attempt, False
    stage, started = attempt
    if stage and now - started > pattern.timeout:
        stage, started = NO_ATTEMPT
    ports = pattern.ports
    if stage:
        if port == ports[stage]:
            stage += 1
            if stage == len(ports):
                return NO_ATTEMPT, True
            return (stage, started), False
        if port == ports[stage - 1]:
            return (stage, started), False
    if port == ports[0]:
        if len(ports) == 1:
            return NO_ATTEMPT, True
        return (1, now), False
    return NO_ATTEMPT, False


# A source's state is one flat tuple, (last activity, target, stage, started, target,
# stage, started, ...), keyed by its packed address: the smallest Python can hold, as
# a flood of spoofed first knocks fills the table up to max_sources.
_State = tuple[Any, ...]


class SequenceMatcher:
    """Matches knocks from many sources against many patterns at once.

    Per packet the cost is the source's attempts in progress plus the patterns that
    start with that port, not the number of patterns. Patterns can be replaced
    (one-time sequences roll); attempts on patterns that remain carry on.
    """

    def __init__(self, patterns: Iterable[Pattern], max_sources: int = 100_000) -> None:
        if max_sources < 1:
            raise ValueError("max_sources must be at least 1")
        self.max_sources = max_sources
        # Least recently active first. Not a dict: a dict finds its first item by
        # walking past every slot deleted since it last grew, so evicting the oldest
        # under a flood of first knocks cost tens of microseconds a knock, growing
        # with max_sources; an OrderedDict finds it at once.
        self._sources: OrderedDict[bytes, _State] = OrderedDict()
        self.evicted = 0
        self.set_patterns(patterns)

    def set_patterns(self, patterns: Iterable[Pattern]) -> None:
        self.patterns: dict[Target, Pattern] = {p.target: p for p in patterns}
        self._by_first: dict[Port, list[Pattern]] = {}
        for pattern in self.patterns.values():
            self._by_first.setdefault(pattern.ports[0], []).append(pattern)
        self._horizon = max((p.timeout for p in self.patterns.values()), default=0.0)

    def __len__(self) -> int:
        return len(self._sources)

    def feed(
        self,
        source: Address,
        port: Port,
        now: float,
        flags: int = SYN,
        destination: Address | None = None,
    ) -> list[Target]:
        """Advance every pattern for ``source``; return the targets that completed."""
        key = source.packed
        state = self._sources.pop(key, None)
        completed: list[Target] = []
        kept: list[Any] = []
        seen: set[Target] = set()
        if state is not None:
            for i in range(1, len(state), 3):
                target = state[i]
                seen.add(target)
                pattern = self.patterns.get(target)
                if pattern is None:
                    continue  # the pattern is gone (spent, rolled, reloaded)
                attempt, done = step(
                    pattern, (state[i + 1], state[i + 2]), port, now, flags, destination
                )
                if done:
                    completed.append(target)
                elif attempt[0]:
                    kept += (target, attempt[0], attempt[1])
        for pattern in self._by_first.get(port, ()):
            target = pattern.target
            if target in seen:
                continue
            attempt, done = step(pattern, NO_ATTEMPT, port, now, flags, destination)
            if done:
                completed.append(target)
            elif attempt[0]:
                kept += (target, attempt[0], attempt[1])
        if kept:
            self._make_room(now)
            self._sources[key] = (now, *kept)  # re-inserted: most recently active
        return completed

    def expire(self, now: float) -> None:
        """Forget sources whose every attempt has timed out."""
        sources = self._sources
        while sources:
            oldest = next(iter(sources))
            if now - sources[oldest][0] <= self._horizon:
                return
            del sources[oldest]

    def _make_room(self, now: float) -> None:
        if len(self._sources) < self.max_sources:
            return
        self.expire(now)
        while len(self._sources) >= self.max_sources:
            self._sources.popitem(last=False)
            self.evicted += 1

    def forget(self, source: Address) -> bool:
        """End every attempt of ``source`` (it touched a port no sequence uses: a scan).
        Returns whether it had one."""
        return self._sources.pop(source.packed, None) is not None

    def tracks(self, source: Address) -> bool:
        """Does ``source`` hold an attempt (possibly timed out, not yet forgotten)?"""
        return source.packed in self._sources

    def tracked(self) -> list[bytes]:
        """The packed addresses of every source that holds an attempt."""
        return list(self._sources)

    def first_ports(self) -> frozenset[Port] | None:
        """The ports that start a sequence, which the kernel can remember by itself
        (it keeps no more than which first port a source hit, and when); None when a
        sequence has a single port: that knock must reach sesame at once."""
        if any(len(p.ports) < 2 for p in self.patterns.values()):
            return None
        return frozenset(self._by_first)

    def stage(self, source: Address, target: Target) -> int:
        """How many ports of ``target``'s pattern ``source`` has matched (for tests)."""
        state = self._sources.get(source.packed, ())
        for i in range(1, len(state), 3):
            if state[i] == target:
                return int(state[i + 1])
        return 0
