"""Fakes for tests, shipped with the library so users' own tests can use them too,
and :func:`check_gate`: the promises of the :class:`~sesame.firewall.gate.Gate`
protocol, checked against any implementation (the memory gate in the unit tests,
the nftables gate in the kernel tests); :func:`check_store` does the same for a
cluster's :class:`~sesame.cluster.store.Store` (the memory store, and Redis)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import ip_address

from sesame.basics import Address, Port
from sesame.cluster.memory import Backend, MemoryStore
from sesame.cluster.store import Changed, Claimed, Event, Heard, Store
from sesame.config import Config, parse
from sesame.engine import Action, Engine, Grant, Spent
from sesame.engine.cluster import Outcome
from sesame.engine.events import Element
from sesame.firewall.gate import Gate
from sesame.firewall.memory import MemoryGate

__all__ = [
    "Backend",
    "FakeClock",
    "KernelFirstStage",
    "MemoryGate",
    "MemoryStore",
    "check_gate",
    "check_store",
    "gate_config",
    "recorded",
]


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


class KernelFirstStage(MemoryGate):
    """A memory gate whose kernel remembered first knocks: ``hits`` maps a source to
    (first port, age in seconds); ``taken`` lists the sources followed since."""

    def __init__(self, clock: Callable[[], float], hits: dict[Address, tuple[Port, float]]) -> None:
        super().__init__(clock)
        self.hits = hits
        self.taken: list[Address] = []

    def first_hit(self, address: Address) -> tuple[Port | None, float] | None:
        return self.hits.get(address)

    def take(self, addresses: Iterable[Address], seconds: float) -> None:
        for address in addresses:
            self.taken.append(address)
            self.hits.pop(address, None)  # read: sesame follows the source from now on

    def forget_hit(self, address: Address) -> None:
        self.hits.pop(address, None)


def gate_config(table: str = "sesame") -> Config:
    """A config for :func:`check_gate`: two doors that open 22/tcp."""
    return parse(
        f"""
[server]
table = "{table}"
[[door]]
name = "ssh"
sequence = ["7000/tcp", "8000/tcp"]
open = ["22/tcp"]
[[door]]
name = "admin"
sequence = ["7100/tcp", "8100/tcp"]
open = ["22/tcp", "2222/tcp"]
""",
        "check_gate.toml",
    )


def check_gate(gate: Gate, config: Config, clock: Callable[[], float]) -> None:
    """Check the promises every gate makes (see :class:`sesame.firewall.gate.Gate`),
    on a gate with no table yet; ``config`` from :func:`gate_config`, ``clock`` the
    time ``apply`` and ``entries`` count in. Raises AssertionError on a broken one."""
    a, b = ip_address("192.0.2.7"), ip_address("2001:db8::7")
    ssh, alt = Port("tcp", 22), Port("tcp", 2222)

    def held(address: Address, port: Port, *grants: tuple[str, str, float]) -> Element:
        now = clock()
        holders = tuple(Grant(d, address, (port,), now + s, u) for d, u, s in grants)
        return Element(address, port, max(g.expires for g in holders), holders)

    def live() -> dict[tuple[Address, Port], list[tuple[str, str, float]]]:
        found = {}
        for e in gate.entries():
            found[e.address, e.port] = [(h.door, h.user, e.left - h.before) for h in e.held()]
        return found

    assert not gate.exists() and gate.entries() == [], "a new gate holds nothing"
    gate.install(config)
    assert gate.exists() and gate.entries() == [], "install makes the table, with no grant"
    gate.apply([held(a, ssh, ("ssh", "", 30)), held(b, ssh, ("admin", "alice", 60))], clock())
    found = live()
    assert set(found) == {(a, ssh), (b, ssh)}, found
    [(door, user, left)] = found[a, ssh]
    assert (door, user) == ("ssh", "") and 28 < left <= 30, found
    assert found[b, ssh][0][:2] == ("admin", "alice"), found
    gate.apply([held(a, ssh, ("ssh", "", 90))], clock())
    [(_, _, left)] = live()[a, ssh]
    assert 88 < left <= 90, "applying again refreshes, one element stays one"
    gate.apply([held(a, alt, ("admin", "bob", 60), ("ssh", "", 20))], clock())
    holders = live()[a, alt]
    assert [h[:2] for h in holders] == [("admin", "bob"), ("ssh", "")], holders
    assert 58 < holders[0][2] <= 60 and 18 < holders[1][2] <= 20.5, holders
    listed = gate.listed()
    mine = {(e.address, e.port, e.held()) for e in listed.take(a)}
    assert mine == {(e.address, e.port, e.held()) for e in gate.entries() if e.address == a}
    assert listed.left == 1 and [e.address for e in listed.rest()] == [b], "listed by source"
    assert listed.take(a) == [] and listed.left == 0, "each source is taken once"
    gate.install(config)
    assert set(live()) == {(a, ssh), (b, ssh), (a, alt)}, "a reinstall keeps live grants"
    stale = [e for e in gate.entries() if e.address == b]
    gate.install(config, stale)
    assert set(live()) == {(a, ssh), (a, alt)}, "install deletes the stale elements"
    gate.apply([Element(a, ssh, None), Element(a, ssh, None)], clock())
    assert set(live()) == {(a, alt)}, "closing deletes; closing twice is no fault"
    gate.set_knock_ports([Port("tcp", 7000), Port("tcp", 8000)], [Port("tcp", 7000)], [a])
    gate.set_knock_ports([Port("tcp", 7000), Port("tcp", 8000)], None)
    assert gate.first_hit(b) is None, "no first knock was remembered of b"
    gate.forget_hit(b)  # nothing to forget: no fault
    gate.take([], 5.0)
    assert set(live()) == {(a, alt)}, "knock ports leave grants alone"
    gate.know([a, b], 3600.0)
    gate.know([a], 3600.0)  # known already: no fault
    assert set(live()) == {(a, alt)}, "sources heard first leave grants alone"


def check_store(make: Callable[[], Store], prefix: str = "sesame", timeout: float = 10.0) -> None:
    """The promises of :class:`~sesame.cluster.store.Store`: ``make()`` gives another
    node's store, on one store that holds nothing of this check yet."""
    first, second = make(), make()
    later: Store | None = None
    try:
        for store in (first, second):
            store.start()
            _until(store, lambda e: isinstance(e, Changed) and e.up, timeout)
        key = f"{prefix}:seen:check-{os.urandom(8).hex()}"
        rounds: list[tuple[Store, int, Outcome]] = [
            (first, 1, "claimed"),
            (second, 2, "taken"),  # another node's claim of it: a replay
            (first, 3, "taken"),
        ]
        for store, token, outcome in rounds:
            store.claim(token, key, 30_000)
            store.send()
            seen = _until(store, _claimed(token), timeout)
            assert Claimed(token, outcome) in seen, (token, seen)
        until = time.time() + 30
        body, mac = b'{"check":1}', os.urandom(32).hex().encode()
        # An entry told with a claim: only if the claim is made.
        key = f"{prefix}:seen:check-{os.urandom(8).hex()}"
        made, lost = ((f'{{"check":{n}}}'.encode(), os.urandom(32).hex().encode()) for n in (2, 3))
        first.claim(4, key, 30_000, (*made, until))
        first.send()
        assert Claimed(4, "claimed") in _until(first, _claimed(4), timeout)
        second.claim(5, key, 30_000, (*lost, until))
        second.send()
        seen = _until(second, _claimed(5), timeout)
        assert Claimed(5, "taken") in seen, seen
        marker = (b'{"check":4}', os.urandom(32).hex().encode())
        second.tell(*marker, until)  # after what the taken claim would have told
        second.send()
        heard = _until(first, lambda e: isinstance(e, Heard) and e.body == marker[0], timeout)
        assert not any(isinstance(e, Heard) and e.body == lost[0] for e in heard), heard
        first.tell(body, mac, until)
        first.send()
        seen += _until(second, lambda e: isinstance(e, Heard) and e.body == body, timeout)
        assert Heard(body, mac, False) in seen, seen
        assert Heard(*made, False) in seen, "the entry of a claim made is told"
        later = make()
        later.start()  # a node that comes later reads the live entries
        heard = _until(later, lambda e: isinstance(e, Heard) and e.body == body, timeout)
        assert Heard(body, mac, True) in heard, heard
    finally:
        for node in (first, second, later):
            if node is not None:
                node.close()


def _claimed(token: int) -> Callable[[Event], bool]:
    return lambda event: isinstance(event, Claimed) and event.token == token


def _until(store: Store, done: Callable[[Event], bool], timeout: float) -> list[Event]:
    """The events of ``store`` up to the first for which ``done`` holds."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while not any(done(e) for e in seen):
        left = deadline - time.monotonic()
        assert left > 0, f"no such event in time; seen {seen}"
        select.select([store.fileno()], [], [], left)
        seen += store.take()
    return seen
