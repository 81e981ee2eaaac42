"""An in-memory gate with the NftGate interface, for tests (users' too)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from sesame.basics import Address, Port
from sesame.config import Config
from sesame.engine.events import Element
from sesame.firewall.elements import Entry, Holder, Listed


class MemoryGate:
    """Holds grant elements like the kernel's sets, with the deadline in caller time.

    ``clock`` gives the time for ``entries``; pass the fake clock the engine uses.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.elements: dict[tuple[Address, Port], tuple[str, float, str]] = {}
        self.holders: dict[tuple[Address, Port], tuple[Holder, ...]] = {}
        self.knock: frozenset[Port] = frozenset()
        self.first: frozenset[Port] | None = None  # the kernel has no first stage here
        self.installed: Config | None = None
        self.transactions = 0
        self.known: dict[Address, float] = {}  # sources heard first, until (clock time)

    def install(
        self,
        config: Config,
        stale: Iterable[Entry] = (),
        knock: Iterable[Port] | None = None,
        first: Iterable[Port] | None = None,
    ) -> None:
        self.installed = config
        self.first = None if first is None else frozenset(first)
        self.knock = frozenset(config.knock_ports if knock is None else knock)
        for entry in stale:
            self.elements.pop((entry.address, entry.port), None)
            self.holders.pop((entry.address, entry.port), None)
        self.transactions += 1

    def apply(self, elements: Sequence[Element], now: float) -> None:
        for held in elements:
            key = (held.address, held.port)
            if held.until is None:
                self.elements.pop(key, None)
                self.holders.pop(key, None)
            else:
                latest = held.holders[0]
                self.elements[key] = (latest.door, held.until, latest.user)
                self.holders[key] = tuple(
                    Holder(g.door, g.user, held.until - g.expires) for g in held.holders
                )
        self.transactions += 1

    def set_knock_ports(
        self,
        ports: Iterable[Port],
        first: Iterable[Port] | None = None,
        tracked: Iterable[Address] | None = None,
    ) -> None:
        self.knock = frozenset(ports)
        self.first = None if first is None else frozenset(first)
        self.transactions += 1

    def know(self, addresses: Iterable[Address], seconds: float) -> None:
        now = self.clock()
        for address in addresses:
            if self.known.get(address, 0.0) <= now:  # one known already keeps its time
                self.known[address] = now + seconds
        self.transactions += 1

    def knows(self, address: Address) -> bool:
        """Would the kernel pass ``address``'s SPA datagrams apart, to be heard first?"""
        return self.known.get(address, 0.0) > self.clock()

    def first_hit(self, address: Address) -> tuple[Port | None, float] | None:
        """Every knock reaches the engine here: there is never a first knock to read."""
        return None

    def take(self, addresses: Iterable[Address], seconds: float) -> None:
        return None

    def forget_hit(self, address: Address) -> None:
        return None

    def exists(self) -> bool:
        return self.installed is not None

    def dropped(self) -> dict[str, int]:
        """No kernel here: nothing was dropped before sesame saw it."""
        return {}

    def allows(self, address: Address, port: Port, now: float) -> bool:
        """Would the kernel let a new connection from ``address`` to ``port`` in?"""
        entry = self.elements.get((address, port))
        return entry is not None and entry[1] > now

    def listed(self) -> Listed[Entry]:
        """The live elements by source, as the kernel would list them."""
        groups: dict[bytes, list[Entry]] = {}
        for entry in self.entries():
            groups.setdefault(entry.address.packed, []).append(entry)
        return Listed(groups, list)

    def entries(self) -> list[Entry]:
        """The live elements, as the kernel would list them."""
        now = self.clock()
        return [
            Entry(address, port, door, deadline - now, user, self.holders.get((address, port), ()))
            for (address, port), (door, deadline, user) in self.elements.items()
            if deadline > now
        ]
