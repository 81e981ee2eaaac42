"""The grant book: which address may reach which door's ports, until when.

A grant is keyed by (door, address): knocking again refreshes it, never adds a
second one. Grants opened by a user are also indexed by (door, user), so a user's
new address can replace the old one. Deadlines are engine time (``now`` is passed in).
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable

from sesame.basics import Address, Port
from sesame.engine.events import Closed, CloseReason, Decision, Element, Grant, Opened, Refreshed

GrantKey = tuple[str, Address]


class GrantBook:
    """Live grants with their deadlines."""

    def __init__(self) -> None:
        self._grants: dict[GrantKey, Grant] = {}
        self._by_user: dict[tuple[str, str], set[Address]] = {}
        self._by_element: dict[tuple[Address, Port], set[str]] = {}  # -> doors holding it
        self._deadlines: list[tuple[float, str, str, GrantKey]] = []

    def __len__(self) -> int:
        return len(self._grants)

    def all(self) -> list[Grant]:
        return list(self._grants.values())

    def get(self, door: str, address: Address) -> Grant | None:
        return self._grants.get((door, address))

    def of_user(self, door: str, user: str) -> list[Grant]:
        return [self._grants[door, a] for a in self._by_user.get((door, user), ())]

    def grant(self, grant: Grant) -> Opened | Refreshed:
        """Open ``grant``, or refresh the live one with the same door and address."""
        key = (grant.door, grant.address)
        old = self._grants.get(key)
        if old is not None:
            self._unindex(old)
        self._grants[key] = grant
        if grant.user:
            self._by_user.setdefault((grant.door, grant.user), set()).add(grant.address)
        for port in grant.ports:
            self._by_element.setdefault((grant.address, port), set()).add(grant.door)
        # The address string keeps heap entries comparable across v4 and v6.
        heapq.heappush(self._deadlines, (grant.expires, grant.door, str(grant.address), key))
        return Opened(grant) if old is None else Refreshed(grant)

    def close(self, door: str, address: Address, reason: CloseReason) -> Closed | None:
        grant = self._grants.pop((door, address), None)
        if grant is None:
            return None
        self._unindex(grant)
        return Closed(grant, reason)

    def _unindex(self, grant: Grant) -> None:
        for port in grant.ports:
            doors = self._by_element.get((grant.address, port))
            if doors is not None:
                doors.discard(grant.door)
                if not doors:
                    del self._by_element[grant.address, port]
        if grant.user:
            addresses = self._by_user.get((grant.door, grant.user))
            if addresses is not None:
                addresses.discard(grant.address)
                if not addresses:
                    del self._by_user[grant.door, grant.user]

    def expire(self, now: float) -> list[Closed]:
        """Close every grant whose deadline has passed."""
        closed: list[Closed] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, _, key = heapq.heappop(heap)
            grant = self._grants.get(key)
            if grant is not None and grant.expires == deadline:
                done = self.close(grant.door, grant.address, "expired")
                if done is not None:
                    closed.append(done)
        return closed

    def holders(self, address: Address, port: Port, doors: Container[str]) -> list[Grant]:
        """The live grants of ``doors`` that hold (address, port), latest deadline first."""
        held = [
            self._grants[door, address]
            for door in self._by_element.get((address, port), ())
            if door in doors
        ]
        return sorted(held, key=lambda g: (-g.expires, g.door))

    def elements(self, decisions: Iterable[Decision], doors: Container[str]) -> list[Element]:
        """What the kernel must hold after ``decisions``, for each (address, port) they
        touch, counting only the grants of ``doors`` (those that gate in the kernel):
        held until the latest deadline among them, or deleted if none is left."""
        touched: dict[tuple[Address, Port], None] = {}
        for decision in decisions:
            for port in decision.grant.ports:
                touched[decision.grant.address, port] = None
        return [self.element(address, port, doors) for address, port in touched]

    def element(self, address: Address, port: Port, doors: Container[str]) -> Element:
        held = self.holders(address, port, doors)
        return Element(address, port, held[0].expires if held else None, tuple(held))

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, _, _, key = heap[0]
            grant = self._grants.get(key)
            if grant is not None and grant.expires == deadline:
                return deadline
            heapq.heappop(heap)  # stale: refreshed or closed since
        return None
