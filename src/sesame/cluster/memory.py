"""A store in memory, for tests: the nodes of one test share a :class:`Backend`,
which can fail, come back, and forget what it held, as a real store can. Answers are
events, as from :class:`~sesame.cluster.store.RedisStore`, but come at once."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from sesame.cluster.store import Changed, Claimed, Event, Forgotten, Heard, Told, drain


class Backend:
    """What the store holds: claims (key -> until, Unix time) and live entries."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.claims: dict[str, float] = {}
        self.live: list[tuple[bytes, bytes, float]] = []
        self.stores: list[MemoryStore] = []
        self.up = True
        self.epoch = os.urandom(8)

    def fail(self) -> None:
        """The store stops answering."""
        self.up = False
        for store in self.stores:
            store.report(Changed(False, "stopped"))

    def back(self, forgot: bool = False) -> None:
        """The store answers again (``forgot``: empty, as after a restart without
        persistence)."""
        if forgot:
            self.claims.clear()
            self.live.clear()
            self.epoch = os.urandom(8)
        self.up = True
        for store in self.stores:
            store.report(Changed(True))
            store.connected()


class MemoryStore:
    """One node's store, in memory."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.snapshot = b"{}"
        self.events: list[Event] = []
        self.epoch: bytes | None = None
        self.untold: list[tuple[bytes, bytes, float]] = []
        self.held: list[Callable[[], None]] = []  # claims and entries, until sent
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    def start(self) -> None:
        self.backend.stores.append(self)
        if self.backend.up:
            self.report(Changed(True))
            self.connected()

    def connected(self) -> None:
        """What a node reads on connecting: whether the store forgot, the live
        entries; then what waited."""
        if self.epoch is not None and self.epoch != self.backend.epoch:
            self.report(Forgotten())
        self.epoch = self.backend.epoch
        now = self.backend.clock()
        self.report(*(Heard(b, m, True) for b, m, until in self.backend.live if until > now))
        untold, self.untold = self.untold, []
        for body, mac, until in untold:
            self._tell(body, mac, until)

    def fileno(self) -> int:
        return self._wake_r.fileno()

    def claim(self, token: int, key: str, ttl_ms: int, entry: Told | None = None) -> None:
        self.held.append(lambda: self._claim(token, key, ttl_ms, entry))

    def tell(self, body: bytes, mac: bytes, until: float) -> None:
        self.held.append(lambda: self._tell(body, mac, until))

    def send(self) -> None:
        held, self.held = self.held, []
        for step in held:
            step()

    def _claim(self, token: int, key: str, ttl_ms: int, entry: Told | None) -> None:
        backend = self.backend
        if not backend.up:
            self.report(Claimed(token, "failed"))
            return
        if self.epoch is not None and self.epoch != backend.epoch:
            self.epoch = backend.epoch
            self.report(Forgotten(), Claimed(token, "forgotten"))
            return
        self.epoch = backend.epoch
        now = backend.clock()
        if backend.claims.get(key, 0.0) > now:
            self.report(Claimed(token, "taken"))
            return
        backend.claims[key] = now + max(1, ttl_ms) / 1000
        if entry is not None:
            self._tell(*entry)
        self.report(Claimed(token, "claimed"))

    def _tell(self, body: bytes, mac: bytes, until: float) -> None:
        if not self.backend.up:
            self.untold.append((body, mac, until))
            return
        self.backend.live.append((body, mac, until))
        for store in self.backend.stores:
            store.report(Heard(body, mac))

    def take(self) -> list[Event]:
        drain(self._wake_r)
        taken, self.events = self.events, []
        return taken

    def report(self, *events: Event) -> None:
        self.events.extend(events)
        self._wake_w.send(b"\0")

    def close(self) -> None:
        if self in self.backend.stores:
            self.backend.stores.remove(self)
        self._wake_r.close()
        self._wake_w.close()
