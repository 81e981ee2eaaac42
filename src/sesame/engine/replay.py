"""The replay window: keys of accepted one-shot messages, kept until they could no
longer be accepted anyway (their timestamp left the time window), so memory is
bounded by the window, and by a hard cap (full means refuse: fail closed)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class ReplayWindow:
    def __init__(self, cap: int = 1_000_000) -> None:
        self.cap = cap
        self._until: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, key: object) -> bool:
        return key in self._until

    def add(self, key: bytes, until: float) -> bool:
        """Remember ``key`` until ``until`` (wall time). False if the window is full."""
        if key in self._until:
            return False
        if len(self._until) >= self.cap:
            return False
        self._until[key] = until
        heapq.heappush(self._heap, (until, key))
        return True

    def next_expiry(self) -> float | None:
        """When the oldest key may be forgotten (wall time), if there is one."""
        return self._heap[0][0] if self._heap else None

    def prune(self, wall: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < wall:
            _, key = heapq.heappop(heap)
            self._until.pop(key, None)

    def restore(self, entries: Iterable[tuple[bytes, float]], wall: float) -> None:
        for key, until in entries:
            if until >= wall:
                self.add(key, until)

    def items(self) -> list[tuple[bytes, float]]:
        return list(self._until.items())
