"""The engine: knocks in, decisions out. No sockets, no clock, no subprocess."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sesame.doors import Door
from sesame.engine.events import Address, Closed, Decision, Grant, Knock, Opened
from sesame.engine.grants import GrantBook
from sesame.engine.sequences import Pattern, SequenceMatcher


class Engine:
    """Sequence matching and grant bookkeeping for a set of doors.

    ``knock`` and ``tick`` return the decisions the caller must carry out (open,
    refresh, close). ``counters`` counts what happened, by name, for logs and status.
    """

    def __init__(self, doors: Sequence[Door], max_sources: int = 100_000) -> None:
        self.grants = GrantBook()
        self.counters: Counter[str] = Counter()
        self._setup(doors, max_sources)

    def _setup(self, doors: Sequence[Door], max_sources: int) -> None:
        self.doors = {door.name: door for door in doors}
        patterns = [
            Pattern((door.name, kind), ports, door.seq_timeout)
            for door in doors
            for kind, ports in door.sequences()
        ]
        self.matcher = SequenceMatcher(patterns, max_sources)

    def reconfigure(self, doors: Sequence[Door], max_sources: int, now: float) -> list[Decision]:
        """Take new doors. Attempts in progress restart; grants of doors that
        remain are kept as they are, those of removed doors are closed."""
        self._setup(doors, max_sources)
        decisions: list[Decision] = []
        for grant in self.grants.all():
            door = self.doors.get(grant.door)
            if door is None or door.open != grant.ports:
                closed = self.grants.close(grant.door, grant.address, "door removed")
                if closed is not None:
                    decisions.append(closed)
        decisions.extend(self.tick(now))
        return decisions

    def knock(self, knock: Knock, now: float) -> list[Decision]:
        """Feed one knock packet; return what must happen now."""
        self.counters["knocks"] += 1
        evicted = self.matcher.evicted
        decisions: list[Decision] = []
        for key in self.matcher.feed(knock.source, knock.port, now):
            name, kind = key
            door = self.doors[name]
            if kind == "open":
                decisions.append(self.open(door, knock.source, now))
            else:
                closed = self.grants.close(name, knock.source, "unknock")
                self.counters["unknocks"] += 1
                if closed is not None:
                    decisions.append(closed)
        self.counters["evicted"] += self.matcher.evicted - evicted
        return decisions

    def open(self, door: Door, address: Address, now: float) -> Decision:
        """Grant ``door`` to ``address`` for the door's ``open_for``."""
        decision = self.grants.grant(Grant(door.name, address, door.open, now + door.open_for))
        self.counters["opened" if isinstance(decision, Opened) else "refreshed"] += 1
        return decision

    def revoke(self, door: str, address: Address) -> Closed | None:
        closed = self.grants.close(door, address, "revoked")
        if closed is not None:
            self.counters["revoked"] += 1
        return closed

    def restore(self, grants: Iterable[Grant]) -> None:
        """Adopt grants found in the kernel at start-up (no decisions: they are live)."""
        for grant in grants:
            if grant.door in self.doors:
                self.grants.grant(grant)

    def tick(self, now: float) -> list[Decision]:
        """Expire grants and stale attempts; return the grants that closed."""
        self.matcher.expire(now)
        closed = self.grants.expire(now)
        self.counters["expired"] += len(closed)
        return list(closed)

    def next_deadline(self) -> float | None:
        return self.grants.next_deadline()
