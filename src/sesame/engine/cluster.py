"""A cluster's decisions, pure: no store, no clock (the store's I/O is
:mod:`sesame.cluster.store`; the daemon's part is :mod:`sesame.service.cluster`).

With a ``[cluster]``, every accepted one-shot message (an SPA datagram, sesame's or
fwknop's, and a one-time sequence) is claimed in the store before it opens anything:
the claim is the shared replay window. The store is in one of two modes, and each
event leads to the next mode and to what follows for the message:

==========  ===============================  ======  ==================================
mode        event                            next    what follows
==========  ===============================  ======  ==================================
Up          the claim was made               Up      open it; a cluster door shares it
Up          the claim was already made       Up      refuse: a replay (another node's)
Up          the store lost its memory        Up      refuse; messages stamped before
                                                     now are refused from here on
any         the store failed                 Down    refuse, or open here alone if the
                                                     door says on_store_down = "local"
Down        a message to claim               Down    not sent: as "the store failed"
Down        the store answers again          Up      claims resume, live grants read
==========  ===============================  ======  ==================================

A door with ``scope = "cluster"`` shares what opens and what closes early (an unknock,
a revoke) as entries (:mod:`sesame.cluster.entries`); every node applies them with
the same deadline, in Unix time. :class:`Scopes` judges an entry from another node:
it must name a cluster door of this node's config, ports that door opens, a user who
may open it, and a deadline no further than the door's longest grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sesame.basics import Address
from sesame.cluster.entries import Entry, Kind, new_id
from sesame.doors import Door, FwknopStanza, User
from sesame.engine.events import Admission, Closed, Decision, Grant, Opened, Refreshed
from sesame.errors import RemoteError

Outcome = Literal["claimed", "taken", "forgotten", "failed"]
SKEW = 5.0  # seconds a deadline may lie beyond the door's longest grant (clocks differ)


@dataclass(frozen=True, slots=True)
class Up:
    """The store answers."""


@dataclass(frozen=True, slots=True)
class Down:
    """The store does not answer, since ``since`` (engine time), for ``why``."""

    since: float
    why: str


Mode = Up | Down


def after(mode: Mode, outcome: Outcome | Literal["back"], now: float, why: str = "") -> Mode:
    """The store's mode after an event (see the table)."""
    if outcome == "failed":
        return mode if isinstance(mode, Down) else Down(now, why)
    if outcome == "back" or isinstance(mode, Up):
        return Up()
    return mode  # a claim answered while down: the writer saw it up, "back" follows


def opens(outcome: Outcome, on_store_down: str) -> bool:
    """Does a message whose claim ended so open (see the table)?"""
    if outcome == "claimed":
        return True
    return outcome == "failed" and on_store_down == "local"


@dataclass(frozen=True, slots=True)
class Closing:
    """An entry from another node closes the grants of ``door`` at ``address``."""

    door: str
    address: Address
    reason: Literal["unknock", "revoked"]


class Scopes:
    """Which doors and stanzas share their grants, what each does when the store is
    down, and the judgment of entries from other nodes."""

    def __init__(self, node: str, on_store_down: str = "refuse") -> None:
        self.node = node
        self.default = on_store_down
        self.doors: dict[str, Door] = {}
        self.stanzas: dict[str, FwknopStanza] = {}
        self.users: dict[str, User] = {}
        self.down: dict[str, str] = {}

    def configure(
        self, doors: Sequence[Door], users: Sequence[User], stanzas: Sequence[FwknopStanza]
    ) -> None:
        self.doors = {d.name: d for d in doors if d.scope == "cluster"}
        self.stanzas = {s.name: s for s in stanzas if s.scope == "cluster"}
        self.users = {u.name: u for u in users}
        both: list[Door | FwknopStanza] = [*doors, *stanzas]
        self.down = {d.name: d.on_store_down or self.default for d in both}

    def on_store_down(self, door: str) -> str:
        return self.down.get(door, self.default)

    def shared(self, door: str) -> bool:
        return door in self.doors or door in self.stanzas

    def entries(self, decisions: Iterable[Decision], now: float, wall: float) -> list[Entry]:
        """What this node tells the others of ``decisions`` made here: grants of
        cluster doors that opened or were refreshed, and those closed by an unknock or
        a revoke (the rest every node decides alone: expiry, replacement)."""
        told: list[Entry] = []
        for decision in decisions:
            grant = decision.grant
            if not self.shared(grant.door):
                continue
            until = round(wall + grant.expires - now, 3)
            if isinstance(decision, (Opened, Refreshed)):
                kind: Kind = "open"
            elif isinstance(decision, Closed) and decision.reason in ("unknock", "revoked"):
                kind = "close"
            else:
                continue
            reason = decision.reason if isinstance(decision, Closed) else ""
            told.append(self._entry(kind, grant, until, wall, reason))
        return told

    def opening(self, admission: Admission, wall: float) -> Entry:
        """The entry of what ``admission`` will open, told with the claim that lets it
        (it reaches the other nodes only if the claim is made); its deadline is
        ``seconds`` from ``wall``."""
        grant = Grant(
            admission.door, admission.address, admission.ports, admission.seconds, admission.user
        )
        return self._entry("open", grant, round(wall + admission.seconds, 3), wall, "")

    def _entry(self, kind: Kind, grant: Grant, until: float, wall: float, reason: str) -> Entry:
        return Entry(
            kind,
            grant.door,
            grant.address,
            grant.ports,
            until,
            grant.user,
            self.node,
            wall,
            new_id(),
            reason,
        )

    def judge(self, entry: Entry, wall: float) -> Admission | Closing:
        """What an entry from another node does here; RemoteError when it may not."""
        door, stanza = self.doors.get(entry.door), self.stanzas.get(entry.door)
        if door is None and stanza is None:
            raise RemoteError("not a cluster door here")
        if entry.kind == "close":
            reason: Literal["unknock", "revoked"] = (
                "unknock" if entry.reason == "unknock" else "revoked"
            )
            return Closing(entry.door, entry.address, reason)
        if door is not None:
            user = self.users.get(entry.user)
            if entry.user and (user is None or door.name not in user.doors):
                raise RemoteError("user may not open it here")
            if not set(entry.ports) <= set(door.open):
                raise RemoteError("ports the door does not open here")
            longest, one_address = float(door.open_for), door.one_address_per_user
        else:
            assert stanza is not None
            local = {p for p in entry.ports if not p.host}
            nat = len(local) < len(entry.ports)
            if not local <= set(stanza.open_ports) or (nat and not stanza.nat):
                raise RemoteError("ports the door does not open here")
            longest, one_address = float(stanza.max_fw_timeout), False
        seconds = min(entry.until - wall, longest + SKEW)
        if seconds <= 0:
            raise RemoteError("expired")
        return Admission(
            entry.door,
            entry.address,
            entry.ports,
            seconds,
            entry.user,
            one_address,
            per_port=stanza is not None,
        )
