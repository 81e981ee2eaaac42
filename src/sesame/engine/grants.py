"""The grant book: which address may reach which door's ports, until when.

A grant is keyed by (door, address): knocking again refreshes it, never adds a
second one. Deadlines are engine time (``now`` is always passed in).
"""

from __future__ import annotations

import heapq

from sesame.engine.events import Address, Closed, CloseReason, Grant, Opened, Refreshed

GrantKey = tuple[str, Address]


class GrantBook:
    """Live grants with their deadlines."""

    def __init__(self) -> None:
        self._grants: dict[GrantKey, Grant] = {}
        self._deadlines: list[tuple[float, str, str, GrantKey]] = []

    def __len__(self) -> int:
        return len(self._grants)

    def all(self) -> list[Grant]:
        return list(self._grants.values())

    def get(self, door: str, address: Address) -> Grant | None:
        return self._grants.get((door, address))

    def grant(self, grant: Grant) -> Opened | Refreshed:
        """Open ``grant``, or refresh the live one with the same door and address."""
        key = (grant.door, grant.address)
        known = key in self._grants
        self._grants[key] = grant
        # The address string keeps heap entries comparable across v4 and v6.
        heapq.heappush(self._deadlines, (grant.expires, grant.door, str(grant.address), key))
        return Refreshed(grant) if known else Opened(grant)

    def close(self, door: str, address: Address, reason: CloseReason) -> Closed | None:
        grant = self._grants.pop((door, address), None)
        return None if grant is None else Closed(grant, reason)

    def expire(self, now: float) -> list[Closed]:
        """Close every grant whose deadline has passed."""
        closed: list[Closed] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, _, key = heapq.heappop(heap)
            grant = self._grants.get(key)
            if grant is not None and grant.expires == deadline:
                del self._grants[key]
                closed.append(Closed(grant, "expired"))
        return closed

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, _, _, key = heap[0]
            grant = self._grants.get(key)
            if grant is not None and grant.expires == deadline:
                return deadline
            heapq.heappop(heap)  # stale: refreshed or closed since
        return None
