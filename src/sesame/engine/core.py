"""The engine: packets in, actions out. No sockets, no clock, no subprocess: ``now``
(monotonic, for deadlines) and ``wall`` (Unix time, for timestamps and time steps)
are passed in.

:meth:`Engine.packet` is the one entry point for what the kernel passes: it sorts a
packet by the kind of its port (sesame SPA, fwknop SPA, knock) and hands it to the
module that judges that kind: :mod:`~sesame.engine.spa`, :mod:`~sesame.engine.fwknop`,
:mod:`~sesame.engine.knocks`. What they accept goes through the grant policy
(:mod:`~sesame.engine.policy`). The kernel's first stage
(:mod:`~sesame.engine.first_stage`) decides when a knock needs the first knock the
kernel remembered read back first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import ip_address
from typing import Literal

from sesame.basics import SYN, Address, Port
from sesame.doors import Door, FwknopStanza, User, first_stage_allowed, longest_sequence
from sesame.engine import first_stage as stage
from sesame.engine.events import (
    Action,
    Admission,
    Closed,
    Decision,
    Element,
    Grant,
    Knock,
)
from sesame.engine.fwknop import FwknopJudge
from sesame.engine.knocks import Knocks
from sesame.engine.limits import Shares
from sesame.engine.policy import Policy, admission
from sesame.engine.replay import ReplayWindow
from sesame.engine.spa import SpaJudge
from sesame.wire import spa as spa_wire
from sesame.wire.packet import Packet

SPA_VERSION = bytes([spa_wire.VERSION])
Output = Action | stage.Command
Kind = Literal["spa", "fwknop", "knock"]
PortKind = Literal["spa", "fwknop", "both"]


class Engine:
    """Knock matching, SPA verification, grant bookkeeping and the kernel's first
    stage for one config.

    Every method returns the actions the caller must carry out (open, refresh, close,
    persist a spent key, a command for the gate). ``counters`` counts what happened,
    by name. Methods that judge remote input raise :class:`RemoteError` with a reason
    and change nothing.
    """

    def __init__(
        self,
        doors: Sequence[Door],
        users: Sequence[User] = (),
        *,
        fwknop: Sequence[FwknopStanza] = (),
        max_sources: int = 40_000,
        spa_window: int = 60,
        replay_cap: int = 1_000_000,
        spa_rate: float = 1.0,
        spa_burst: int = 30,
    ) -> None:
        self.counters: Counter[str] = Counter()
        self.replay = ReplayWindow(replay_cap)
        self.shares = Shares(spa_rate, spa_burst)
        self.policy = Policy(self.counters)
        self.grants = self.policy.grants
        self.knocks = Knocks(self.policy, self.replay, self.counters, max_sources)
        self.matcher = self.knocks.matcher
        self.sealed = SpaJudge(self.replay, self.shares, self.counters)
        self.stanzas = FwknopJudge(self.replay, self.shares, self.counters)
        # Authentic messages refused for another address, key holders over their rate:
        # for the daemon to log (and clear).
        self.other_address = self.shares.other_address
        self.over_rate = self.shares.over_rate
        # Messages stamped before this (wall time) are refused: set when the replay
        # record read back at start-up had lost keys, which could then be replayed.
        self.not_before = 0.0
        self.stage: stage.Mode = stage.Userspace(frozenset())
        self.taking: set[Address] = set()  # first knocks read back: sources to follow
        self._configure(doors, users, fwknop, max_sources, spa_window)

    def _configure(
        self,
        doors: Sequence[Door],
        users: Sequence[User],
        fwknop: Sequence[FwknopStanza],
        max_sources: int,
        spa_window: int,
    ) -> list[Closed]:
        closed = self.policy.configure(doors, users, fwknop)
        self.knocks.configure(doors, users, max_sources)
        self.sealed.configure(doors, users, spa_window)
        self.stanzas.configure(fwknop)
        self.targets = any(d.target is not None for d in doors)  # knocks need destinations
        # UDP ports that take SPA: sesame's, fwknop's, or both (told apart by content)
        self.udp: dict[int, PortKind] = {p: "spa" for p in self.sealed.ports}
        for number in self.stanzas.ports:
            self.udp[number] = "both" if number in self.sealed.ports else "fwknop"
        self.first_stage = first_stage_allowed(doors)
        self.longest = longest_sequence(doors)
        return closed

    def reconfigure(
        self,
        doors: Sequence[Door],
        users: Sequence[User],
        *,
        fwknop: Sequence[FwknopStanza] = (),
        max_sources: int,
        spa_window: int,
        now: float,
        spa_rate: float = 1.0,
        spa_burst: int = 30,
    ) -> list[Action]:
        """Take new doors, users and stanzas. Attempts on patterns that remain carry on;
        grants remain unless what opened them is gone, opens other ports, or their user
        lost the door (see :mod:`~sesame.engine.policy`)."""
        actions: list[Action] = []
        actions += self._configure(doors, users, fwknop, max_sources, spa_window)
        self.shares.buckets.keep(
            set(self.sealed.users) | {s.name for s in fwknop}, spa_rate, spa_burst
        )
        actions.extend(self.tick(now))
        return actions

    # -- what the kernel passes ------------------------------------------------------

    @property
    def spa_ports(self) -> frozenset[int]:
        return self.sealed.ports

    @property
    def fwknop_ports(self) -> frozenset[int]:
        return self.stanzas.ports

    @property
    def fwknop_destinations(self) -> bool:
        return self.stanzas.destinations

    @property
    def gated(self) -> frozenset[str]:
        """The doors and stanzas whose grants the kernel holds."""
        return self.policy.gated

    def kind(self, packet: Packet) -> Kind:
        """What a packet is, by the kind of its port: an SPA datagram (sesame's when
        both kinds share a port and its first byte is sesame's version: fwknop's are
        base64 text), or a knock."""
        port = packet.port
        kind = self.udp.get(port.number) if port.proto == "udp" else None
        if kind is None:
            return "knock"
        if kind == "spa" or (kind == "both" and packet.payload[:1] == SPA_VERSION):
            return "spa"
        return "fwknop"

    def packet(
        self, packet: Packet, now: float, wall: float, full: bool = False
    ) -> Sequence[Output]:
        """Judge one packet the kernel passed. ``full``: a knock the kernel had no
        room to remember as a first knock (its map is full). (The judges are called
        straight: this is the path every packet of a flood takes.)"""
        source, port = packet.source, packet.port
        kind = self.udp.get(port.number) if port.proto == "udp" else None
        if kind is not None:  # as kind() sorts it, inlined
            if kind == "spa" or (kind == "both" and packet.payload[:1] == SPA_VERSION):
                return self.sealed.judge(source, port, packet.payload, now, wall, self.not_before)
            to = packet.destination if self.stanzas.destinations else None
            return self.stanzas.judge(source, to, port, packet.payload, now, wall, self.not_before)
        to = packet.destination if self.targets else None
        knock = Knock(source, port, packet.tcp_flags, to)
        if full:
            return [*self.full(now), *self.knocks.knock(knock, now)]
        if now < self.stage.read_until and source not in self.taking:
            read = stage.knock(self.stage, source, now, self.matcher.tracks(source), knock)
            if read:
                return read
        return self.knocks.knock(knock, now)

    def refusal(self, number: int, payload: bytes) -> str | None:
        """What :meth:`packet` refuses a UDP datagram to port ``number`` with this
        payload for, when that needs neither its source nor the time: a datagram in
        fwknop's format no stanza of the port passes before decryption (see
        FwknopJudge.refusal); None otherwise: packet decides."""
        kind = self.udp.get(number)
        if kind == "fwknop" or (kind == "both" and payload[:1] != SPA_VERSION):
            return self.stanzas.refusal(number, payload)
        return None

    def first_knock(
        self, read: stage.ReadHit, hit: tuple[Port | None, float] | None, now: float
    ) -> list[Action]:
        """The first knock the kernel remembered of ``read.source`` (port and age, or
        None), fed at the time it came; then the knock that asked for it."""
        actions: list[Action] = []
        port, age = hit or (None, 0.0)
        if port is not None:
            self.taking.add(read.source)
            actions += self.knock(Knock(read.source, port, SYN), now - age)
        return actions + self.knock(read.then, now)

    def follow(self) -> list[Address]:
        """The sources whose first knocks were read back since last asked: the kernel
        must forget those and follow these sources."""
        taken, self.taking = list(self.taking), set()
        return taken

    def full(self, now: float) -> list[stage.SetPorts]:
        """The kernel had no room for a first knock."""
        return stage.full(self.stage, now, self.counters["knocks"], self.longest)

    def ports(self, now: float) -> list[stage.SetPorts]:
        """What the kernel must pass now, if that changed (see first_stage.ports)."""
        return stage.ports(self.stage, self.knock_ports(), self._wanted(), now, self.longest)

    def _wanted(self) -> frozenset[Port] | None:
        """The first ports the kernel should remember now (None: none, it passes every
        knock: a one-port sequence, or doors the kernel cannot judge)."""
        return self.first_ports() if self.first_stage else None

    def entered(self, mode: stage.Mode) -> None:
        """The gate carried out a SetPorts: the first stage is in ``mode`` now."""
        self.stage = mode

    def installed(self, ports: Iterable[Port]) -> None:
        """The gate was installed with these knock ports (and the first ports it had)."""
        self.stage = replace(self.stage, ports=frozenset(ports))

    def noise(self, source: Address, now: float = 0.0) -> list[stage.Forget]:
        """``source`` touched a port that is neither a knock, a guarded nor a public
        port while it had an attempt in progress: a scan. Its attempts end, and so
        does the first knock the kernel may hold of it."""
        self.counters["noise"] += 1
        if self.matcher.forget(source):
            self.counters["attempts ended by noise"] += 1
        self.taking.discard(source)
        return stage.noise(self.stage, source, now)

    # -- each kind ------------------------------------------------------------------

    def knock(self, knock: Knock, now: float) -> list[Action]:
        """Feed one knock packet; return what must happen now."""
        return self.knocks.knock(knock, now)

    def spa(
        self, source: Address, port: Port, payload: bytes, now: float, wall: float
    ) -> list[Action]:
        """Judge one SPA datagram that ``source`` sent to ``port``."""
        return self.sealed.judge(source, port, payload, now, wall, self.not_before)

    def fwknop(
        self,
        source: Address,
        destination: Address | None,
        port: Port,
        payload: bytes,
        now: float,
        wall: float,
    ) -> list[Action]:
        """Judge one datagram in fwknop's format."""
        return self.stanzas.judge(source, destination, port, payload, now, wall, self.not_before)

    # -- one-time sequences ---------------------------------------------------------

    def set_sequence(
        self, door: str, ports: tuple[Port, ...] | None, upcoming: tuple[Port, ...] = ()
    ) -> None:
        """The sequence of a door with a one-time sequence file (see Knocks)."""
        self.knocks.set_sequence(door, ports, upcoming)

    def knock_ports(self) -> frozenset[Port]:
        """Every port some sequence uses now (fixed, one-time file, rolling)."""
        return self.knocks.ports()

    def first_ports(self) -> frozenset[Port] | None:
        """The ports that start a sequence now (None: a sequence has a single port)."""
        return self.matcher.first_ports()

    def tracks(self, source: Address) -> bool:
        """Does ``source`` hold a knock attempt?"""
        return self.matcher.tracks(source)

    def tracked(self) -> list[Address]:
        """Every source that holds a knock attempt."""
        return [ip_address(packed) for packed in self.matcher.tracked()]

    def roll(self, wall: float) -> frozenset[Port] | None:
        """Follow the clock: drop old replay keys and, when the 30-second step changes,
        recompute the one-time sequences. Returns every knock port the kernel must
        pass to sesame now, or None if that did not change."""
        self.replay.prune(wall)
        return self.knocks.roll(wall, self.not_before)

    def next_roll(self) -> float | None:
        return self.knocks.next_roll()

    # -- grants ---------------------------------------------------------------------

    def open(self, door: Door, address: Address, now: float, user: str = "") -> list[Decision]:
        """Grant ``door`` to ``address`` for the door's ``open_for``."""
        return self.policy.admit(admission(door, address, user), now)

    def admit(self, admission: Admission, now: float) -> list[Decision]:
        """Open what an accepted one-shot message unlocks, once its key is on record."""
        return self.policy.admit(admission, now)

    def elements(self, decisions: Iterable[Decision]) -> list[Element]:
        return self.policy.elements(decisions)

    def element(self, address: Address, port: Port) -> Element:
        return self.policy.element(address, port)

    def revoke(self, door: str, address: Address) -> list[Closed]:
        closed = self.policy.close(door, address, "revoked")
        self.counters["revoked"] += len(closed)
        return closed

    def restore(self, grants: Iterable[Grant]) -> None:
        """Adopt grants found in the kernel at start-up (no actions: they are live)."""
        self.policy.restore(grants)

    def tick(self, now: float) -> list[Action]:
        """Expire grants and stale attempts; return the grants that closed."""
        self.matcher.expire(now)
        return list(self.policy.expire(now))

    def stage_tick(self, now: float) -> list[stage.SetPorts]:
        """While every knock comes to sesame after a full map: is it calm again?"""
        first = self._wanted()
        self.stage, commands = stage.tick(
            self.stage, now, self.counters["knocks"], first, self.longest
        )
        return commands

    def next_deadline(self) -> float | None:
        return self.grants.next_deadline()
