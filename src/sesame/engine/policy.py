"""Grant policy: what an accepted knock or message opens, refreshes or closes.

A grant is keyed by (door, address, ports): opening it again refreshes it. An fwknop
stanza's admission is split into one grant per port, so requests for other ports
open them beside the live ones, each with its own deadline (as fwknopd's rules). A
door with ``one_address_per_user`` keeps one address per user: a user's new address
replaces the old. A new config closes the grants whose door or stanza is gone, no
longer opens their ports, or whose user lost the door.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sesame.basics import Address, Port
from sesame.doors import Door, FwknopStanza, User
from sesame.engine.events import (
    Admission,
    Closed,
    CloseReason,
    Decision,
    Element,
    Grant,
    Opened,
)
from sesame.engine.grants import GrantBook, key_of


def admission(door: Door, address: Address, user: str) -> Admission:
    """What ``door`` opens to ``address`` (for ``user``, if a user opened it)."""
    return Admission(door.name, address, door.open, door.open_for, user, door.one_address_per_user)


class Policy:
    """The grant book and the rules that change it; counts into ``counters``."""

    def __init__(self, counters: Counter[str]) -> None:
        self.grants = GrantBook()
        self.counters = counters
        self.gated: frozenset[str] = frozenset()  # whose grants the kernel holds
        self.names: frozenset[str] = frozenset()

    def configure(
        self, doors: Sequence[Door], users: Sequence[User], fwknop: Sequence[FwknopStanza]
    ) -> list[Closed]:
        """Take a config (the first, or a new one); returns the grants it closes."""
        # The doors and stanzas whose grants the kernel holds (gate = false: commands only).
        self.gated = frozenset({d.name for d in doors if d.gate} | {s.name for s in fwknop})
        self.names = frozenset({d.name for d in doors} | {s.name for s in fwknop})
        by_door = {d.name: d for d in doors}
        stanzas = {s.name: s for s in fwknop}
        people = {u.name: u for u in users}
        closed: list[Closed] = []
        for grant in self.grants.all():
            door, stanza, user = (
                by_door.get(grant.door),
                stanzas.get(grant.door),
                people.get(grant.user),
            )
            if stanza is not None:  # a NAT's ports, while the stanza still NATs
                held = {p for p in grant.ports if not p.host} <= set(stanza.open_ports)
                gone = not held or (any(p.host for p in grant.ports) and not stanza.nat)
            else:
                lost = bool(grant.user) and (user is None or grant.door not in user.doors)
                gone = door is None or not set(grant.ports) <= set(door.open) or lost
            if gone:
                closed.append(self.grants.end(grant, "door removed"))
        return closed

    def admit(self, admission: Admission, now: float) -> list[Decision]:
        """Grant what ``admission`` says for its ``seconds``: a live grant of the same
        door, address and ports is refreshed to ``seconds`` from now; with ``per_port``
        (an fwknop stanza), a grant per port, never shortened (fwknopd's older rule
        stays till its end); with ``one_address``, the user's grants elsewhere close."""
        name, address = admission.door, admission.address
        actions: list[Decision] = []
        if admission.user and admission.one_address:
            for old in self.grants.of_user(name, admission.user):
                if old.address != address:
                    actions.append(self.grants.end(old, "replaced"))
        ports = admission.ports
        for held in [(p,) for p in ports] if admission.per_port else [ports]:
            live = self.grants.get(name, address, held) if admission.per_port else None
            until = max(now + admission.seconds, live.expires if live else 0.0)
            grant = Grant(name, address, held, until, admission.user)
            decision = self.grants.grant(grant)
            self.counters["opened" if isinstance(decision, Opened) else "refreshed"] += 1
            actions.append(decision)
        return actions

    def close(self, door: str, address: Address, reason: CloseReason) -> list[Closed]:
        """End the grants of ``door`` at ``address`` now (an unknock, a revoke)."""
        return self.grants.close(door, address, reason)

    def elements(self, decisions: Iterable[Decision]) -> list[Element]:
        """What the kernel must hold after ``decisions`` (see GrantBook.elements)."""
        return self.grants.elements(decisions, self.gated)

    def element(self, address: Address, port: Port) -> Element:
        return self.grants.element(address, port, self.gated)

    def restore(self, grants: Iterable[Grant]) -> None:
        """Adopt grants found in the kernel at start-up (no actions: they are live)."""
        for grant in grants:  # (a live grant of the same key is newer: it stays)
            if grant.door in self.names and self.grants.get(*key_of(grant)) is None:
                self.grants.grant(grant)

    def expire(self, now: float) -> list[Closed]:
        closed = self.grants.expire(now)
        self.counters["expired"] += len(closed)
        return closed
