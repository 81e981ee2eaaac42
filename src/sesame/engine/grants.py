"""The grant book: which address may reach which door's ports, until when.

A grant is keyed by (door, address, ports): knocking again refreshes it, never adds
a second one. A door always opens the same ports; an fwknop stanza opens what each
message asks for, and its grants are one per port, so that, as in fwknopd, a second
request for other ports opens them beside the first, each expiring on its own. A
door's grants at an address close together (unknock, revoke). Grants opened by a
user are also indexed by (door, user), so a user's new address can replace the old
one. Deadlines are engine time (``now`` is passed in).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Container, Iterable
from typing import TypeVar

from sesame.basics import Address, Port
from sesame.engine.events import Closed, CloseReason, Decision, Element, Grant, Opened, Refreshed

GrantKey = tuple[str, Address, tuple[Port, ...]]
K = TypeVar("K")


def key_of(grant: Grant) -> GrantKey:
    return (grant.door, grant.address, grant.ports)


class GrantBook:
    """Live grants with their deadlines."""

    def __init__(self) -> None:
        self._grants: dict[GrantKey, Grant] = {}
        self._at: dict[tuple[str, Address], set[GrantKey]] = {}
        self._by_user: dict[tuple[str, str], set[GrantKey]] = {}
        self._by_element: dict[tuple[Address, Port], set[GrantKey]] = {}  # -> its holders
        self._deadlines: list[tuple[float, int, GrantKey]] = []
        self._pushed = itertools.count()  # orders equal deadlines: keys are never compared

    def __len__(self) -> int:
        return len(self._grants)

    def all(self) -> list[Grant]:
        return list(self._grants.values())

    def get(self, door: str, address: Address, ports: tuple[Port, ...]) -> Grant | None:
        return self._grants.get((door, address, ports))

    def at(self, door: str, address: Address) -> list[Grant]:
        """The grants of ``door`` at ``address``."""
        return [self._grants[k] for k in self._at.get((door, address), ())]

    def of_user(self, door: str, user: str) -> list[Grant]:
        return [self._grants[k] for k in self._by_user.get((door, user), ())]

    def grant(self, grant: Grant) -> Opened | Refreshed:
        """Open ``grant``, or refresh the live one with the same door, address, ports."""
        key = key_of(grant)
        old = self._grants.get(key)
        if old is not None:
            self._unindex(old)
        self._grants[key] = grant
        self._at.setdefault((grant.door, grant.address), set()).add(key)
        if grant.user:
            self._by_user.setdefault((grant.door, grant.user), set()).add(key)
        for port in grant.ports:
            self._by_element.setdefault((grant.address, port), set()).add(key)
        heapq.heappush(self._deadlines, (grant.expires, next(self._pushed), key))
        return Opened(grant) if old is None else Refreshed(grant)

    def close(self, door: str, address: Address, reason: CloseReason) -> list[Closed]:
        """End every grant of ``door`` at ``address``."""
        return [self.end(g, reason) for g in self.at(door, address)]

    def end(self, grant: Grant, reason: CloseReason) -> Closed:
        """End ``grant`` (a live one)."""
        del self._grants[key_of(grant)]
        self._unindex(grant)
        return Closed(grant, reason)

    def _unindex(self, grant: Grant) -> None:
        key = key_of(grant)
        _discard(self._at, (grant.door, grant.address), key)
        for port in grant.ports:
            _discard(self._by_element, (grant.address, port), key)
        if grant.user:
            _discard(self._by_user, (grant.door, grant.user), key)

    def expire(self, now: float) -> list[Closed]:
        """Close every grant whose deadline has passed."""
        closed: list[Closed] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            grant = self._grants.get(key)
            if grant is not None and grant.expires == deadline:
                closed.append(self.end(grant, "expired"))
        return closed

    def holders(self, address: Address, port: Port, doors: Container[str]) -> list[Grant]:
        """The live grants of ``doors`` that hold (address, port), latest deadline first."""
        keys = self._by_element.get((address, port), ())
        held = [self._grants[key] for key in keys if key[0] in doors]
        return sorted(held, key=lambda g: (-g.expires, g.door))

    def elements(self, decisions: Iterable[Decision], doors: Container[str]) -> list[Element]:
        """What the kernel must hold after ``decisions``, for each (address, port) they
        touch, counting only the grants of ``doors`` (those that gate in the kernel):
        held until the latest deadline among them, or deleted if none is left. One that
        only a grant opened by these decisions holds, and no other decision touched,
        is ``new``."""
        touched: dict[tuple[Address, Port], Grant | None] = {}  # -> the grant opened
        for decision in decisions:
            grant = decision.grant
            opened = grant if isinstance(decision, Opened) else None
            for port in grant.ports:
                where = (grant.address, port)
                touched[where] = opened if where not in touched else None
        return [self.element(a, p, doors, opened) for (a, p), opened in touched.items()]

    def element(
        self, address: Address, port: Port, doors: Container[str], opened: Grant | None = None
    ) -> Element:
        """What the kernel must hold for (address, port); ``new`` if ``opened``, a grant
        that just opened, is its one holder."""
        held = self.holders(address, port, doors)
        new = opened is not None and len(held) == 1 and held[0] is opened
        return Element(address, port, held[0].expires if held else None, tuple(held), new)

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, _, key = heap[0]
            grant = self._grants.get(key)
            if grant is not None and grant.expires == deadline:
                return deadline
            heapq.heappop(heap)  # stale: refreshed or closed since
        return None


def _discard(index: dict[K, set[GrantKey]], at: K, key: GrantKey) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]
