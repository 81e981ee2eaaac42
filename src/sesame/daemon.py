"""The daemon: sensor -> engine -> gate, one thread, one loop.

Signals: SIGTERM and SIGINT stop it; SIGHUP reloads the config (a refused config
leaves the running one in place); SIGUSR1 logs the counters; SIGUSR2 reads the grant
sets back and closes the grants someone removed from the kernel (``sesame revoke``).
On stop the table stays installed, so the guarded ports stay closed (fail closed) and
live grants expire in the kernel.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import select
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from sesame import host
from sesame.basics import SYN, Address, Port
from sesame.compat.knockd import OneTimeFile
from sesame.config import Config
from sesame.engine import Action, Decision, Engine, Knock, Opened, Refreshed, Spent
from sesame.engine.core import knock_ports
from sesame.engine.events import Element, SequenceUsed
from sesame.errors import ConfigError, FirewallError, RemoteError, SesameError
from sesame.files import FileRefused
from sesame.firewall import commands
from sesame.firewall.ruleset import (
    FIRST_SIZE,
    FOLLOW_FULL,
    FOLLOW_SIZE,
    FULL,
    NOISE,
    NOISY_FULL,
    NOISY_SIZE,
    Entry,
    to_grants,
)
from sesame.firewall.watch import Verdict, Watch
from sesame.logs import plural
from sesame.sensor import NflogSensor
from sesame.sensor.monitor import TableMonitor
from sesame.state import ReplayStore
from sesame.wire import decode, spa
from sesame.wire.nflog import Logged

log = logging.getLogger("sesame")
SPA_VERSION = bytes([spa.VERSION])
FLUSH_EVERY = 16
TAKE_BATCH = 64
WARN_EVERY = 60.0  # seconds between two warnings of the same kind
MAX_WAIT = 60.0  # the loop wakes at least this often, whatever a deadline says
COMPACT_RETRY = 60.0  # seconds before a failed compaction of the state file is retried
INTERFACE_EVERY = 5.0  # seconds between looks for a missing [server] interface


class Gate(Protocol):
    def install(
        self,
        config: Config,
        stale: Iterable[Entry] = (),
        knock: Iterable[Port] | None = None,
        first: Iterable[Port] | None = None,
    ) -> None: ...
    def apply(self, elements: Sequence[Element], now: float) -> None: ...
    def entries(self) -> list[Entry]: ...
    def set_knock_ports(
        self,
        ports: Iterable[Port],
        first: Iterable[Port] | None = None,
        tracked: Iterable[Address] | None = None,
    ) -> None: ...
    def first_hit(self, address: Address) -> tuple[Port | None, float] | None: ...
    def take(self, addresses: Iterable[Address], seconds: float) -> None: ...
    def forget_hit(self, address: Address) -> None: ...
    def exists(self) -> bool: ...


def describe(decision: Decision) -> str:
    grant = decision.grant
    ports = ": " + " ".join(str(p) for p in grant.ports) if grant.ports else ""
    by = f" (user {grant.user})" if grant.user else ""
    if isinstance(decision, Opened):
        return f"opened door {grant.door} to {grant.address}{ports}{by}"
    if isinstance(decision, Refreshed):
        return f"refreshed door {grant.door} for {grant.address}{ports}{by}"
    return f"closed door {grant.door} for {grant.address} ({decision.reason}){by}"


def counts(config: Config) -> str:
    """``2 doors, 1 user, 0 fwknop stanzas``."""
    return ", ".join(
        plural(len(items), word)
        for items, word in (
            (config.doors, "door"),
            (config.users, "user"),
            (config.fwknop, "fwknop stanza"),
        )
    )


class Daemon:
    """Wires the engine to a gate, a replay store and a command runner.

    ``clock`` is monotonic time (deadlines), ``wall`` is Unix time (SPA timestamps,
    one-time sequence steps); both are injected so tests can drive them.
    """

    def __init__(
        self,
        config: Config,
        gate: Gate,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.gate = gate
        self.clock = clock
        self.wall = wall
        server = config.server
        self.engine = Engine(
            config.doors,
            config.users,
            fwknop=config.fwknop,
            max_sources=server.max_sources,
            spa_window=server.spa_window,
            spa_rate=server.spa_rate,
            spa_burst=server.spa_burst,
        )
        self.store = self._store(config) if config.needs_state else None
        self.compact_after = 0.0
        self.restore_after: float | None = None  # a failed restore is tried again then
        self.look_for_interface = 0.0  # while [server] interface is missing: when to look
        self.restored_at = -math.inf
        self.one_time: dict[str, OneTimeFile] = {}
        self.knock_ports: frozenset[Port] = frozenset()
        # The first stage: the first ports the kernel remembers by itself (None: it
        # passes every knock); until when a knock may have a first knock to read back;
        # while the kernel's map is full, (since, knocks then, when to look again).
        self.first: frozenset[Port] | None = None
        self.read_hits_until = 0.0
        self.taking: set[Address] = set()  # first knocks read back: sources to follow
        self.overflow: tuple[float, int, float] | None = None
        self.runner = commands.Runner()
        self.drops: dict[str, int] = {}
        self.reports: Counter[str] = Counter()  # what the kernel told about full sets
        self._warned: dict[str, float] = {}
        self.debug = log.isEnabledFor(logging.DEBUG)

    def start(self) -> None:
        """Install the table (keeping live grants) and adopt the grants it holds."""
        now, wall = self.clock(), self.wall()
        if self.store is not None:
            self._restore_replay(self.store, wall)
            if self.store.error is not None:
                self._unrecorded(now)
        entries = self.gate.entries()
        opens = self.config.gated
        held = {e: tuple(h for h in e.held() if e.port in opens.get(h.door, ())) for e in entries}
        stale = [e for e in entries if not held[e]]  # no holder's door opens it any more
        keep = [replace(e, holders=held[e]) for e in entries if held[e]]
        self._load_one_time(self.config)
        self.engine.roll(wall)
        self.knock_ports = self.engine.knock_ports()
        self.gate.install(self.config, stale, self.knock_ports)
        self._update_knock_ports(now)
        self.engine.restore(to_grants(keep, now))
        mixed = [e for e in keep if len(held[e]) != len(e.held())]
        if mixed:  # some holders are gone: the rest hold it until their own deadline
            self.gate.apply([self.engine.element(e.address, e.port) for e in mixed], now)
        self.interface_here(now)
        for entry in keep:
            for holder in entry.held():
                log.info(
                    "kept grant of door %s for %s: %s (%.0fs left)",
                    holder.door,
                    entry.address,
                    entry.port,
                    entry.left - holder.before,
                )

    def packet(self, item: Logged | RemoteError, now: float) -> None:
        """Judge one packet and carry out what follows."""
        self.packets((item,), now)
        self.take_first_knocks()

    def packets(self, items: Iterable[Logged | RemoteError], now: float) -> None:
        """Judge a batch of packets, then carry out what follows in one firewall
        transaction (a flood of valid SPA costs one nft call per batch, not per packet)."""
        actions: list[Action] = []
        for n, item in enumerate(items, 1):
            actions += self.judge(item, now)
            if actions and n % FLUSH_EVERY == 0:  # a grant waits for 16 packets at most
                self.carry_out(actions, now)
                actions = []
        self.carry_out(actions, now)
        if self.engine.other_address:
            self._other_addresses()

    def _other_addresses(self) -> None:
        """Log each authentic SPA refused for asking for another address than it came
        from (each key holder's share bounds how many), with what to do about it."""
        for name, source, asked in self.engine.other_address:
            log.warning(
                "refused SPA of %s from %s: it asks to open for %s. Behind NAT? Set"
                " public_address for this server in the client's config (or --allow-ip);"
                " allow_other_address lets the user open for any address",
                name,
                source,
                asked,
            )
        self.engine.other_address.clear()

    def judge(self, item: Logged | RemoteError, now: float) -> list[Action]:
        """The one entry point for remote input: faults are counted and dropped."""
        source: object = "?"
        try:
            if isinstance(item, RemoteError):
                raise item
            packet = decode(item.payload)
            source, port = packet.source, packet.port
            if item.prefix and item.prefix != FULL:
                self._reported(item.prefix, packet.source, now)
                return []
            if (
                port.proto == "udp"
                and port.number in self.engine.spa_ports
                and (
                    port.number not in self.engine.fwknop_ports
                    or packet.payload[:1] == SPA_VERSION  # fwknop's datagrams are base64 text
                )
            ):
                actions = self.engine.spa(packet.source, port, packet.payload, now, self.wall())
            elif port.proto == "udp" and port.number in self.engine.fwknop_ports:
                to = packet.destination if self.engine.fwknop_destinations else None
                actions = self.engine.fwknop(
                    packet.source, to, port, packet.payload, now, self.wall()
                )
            else:
                if self.debug:
                    log.debug("knock from %s to %s", packet.source, port)
                actions = []
                if item.prefix == FULL:
                    self._overflowed(now)
                elif (
                    now < self.read_hits_until
                    and not self.engine.tracks(packet.source)
                    and packet.source not in self.taking
                ):
                    actions = self._first_knock(packet.source, now)
                to = packet.destination if self.engine.targets else None
                knock = Knock(packet.source, port, packet.tcp_flags, to)
                actions += self.engine.knock(knock, now)
        except RemoteError as exc:
            reason = exc.reason
            self.drops[reason] = self.drops.get(reason, 0) + 1
            if self.debug:
                log.debug("dropped packet from %s: %s", source, reason)
            return []
        return actions

    def _reported(self, prefix: bytes, source: Address, now: float) -> None:
        """What the kernel reports besides knocks: noise from a source with a knock
        attempt in progress (the attempt ends), and sets it had no room in."""
        if prefix == NOISE:
            self.engine.noise(source)
            self.taking.discard(source)
            if self.first is not None or now < self.read_hits_until:
                try:  # its first knock, if the kernel holds one, must not count either
                    # (looked up first: a failed deletion aborts a transaction, which
                    # costs the kernel milliseconds, and a scan sends noise in bursts)
                    if self.gate.first_hit(source) is not None:
                        self.gate.forget_hit(source)
                except FirewallError as exc:
                    log.error("cannot forget the first knock of %s: %s", source, exc)
        elif prefix == NOISY_FULL:
            self.reports["scanner set full"] += 1
            self._warn(
                "noisy",
                now,
                "the scanner sets are full (%d sources in %ds): new scanners are not"
                " remembered; a knock attempt still ends when its source touches any other"
                " port",
                NOISY_SIZE,
                self.config.hold,
            )
        elif prefix == FOLLOW_FULL:
            self.reports["follow set full"] += 1
            self._warn(
                "follow",
                now,
                "%d sources are knocking at once: knocks of new sources are dropped until"
                " there is room",
                FOLLOW_SIZE,
            )
        else:
            raise RemoteError("unknown log prefix")

    def _warn(self, kind: str, now: float, message: str, *args: object) -> None:
        """Log a warning, at most once a minute for each kind."""
        if now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)

    def _first_knock(self, source: Address, now: float) -> list[Action]:
        """Read back the first knock the kernel remembered of ``source`` (a knock of
        a source sesame does not follow reached it, so it has one, unless it expired
        meanwhile) and feed it to the engine at the time it came."""
        try:
            hit = self.gate.first_hit(source)
        except FirewallError as exc:
            log.error("cannot read the first knock of %s: %s", source, exc)
            return []
        port, age = hit or (None, 0.0)
        if port is None:
            return []
        self.taking.add(source)
        return self.engine.knock(Knock(source, port, SYN), now - age)

    def take_first_knocks(self) -> None:
        """Forget the first knocks read back in the kernel, and follow their sources
        (the loop does it when no packet waits: the rest of a sequence goes first)."""
        if not self.taking:
            return
        try:
            self.gate.take(self.taking, self.config.longest_sequence)
        except FirewallError as exc:
            log.error("cannot follow the sources of first knocks: %s", exc)
        self.taking = set()

    def _overflowed(self, now: float) -> None:
        """The kernel had no room for a first knock: pass every knock to sesame (which
        keeps max_sources, least recently active first out) until calm returns."""
        if self.first is None:
            return
        log.warning(
            "%d first knocks in %.0fs: every knock now goes to sesame until calm returns",
            FIRST_SIZE,
            self.config.longest_sequence,
        )
        self.overflow = (now, self.engine.counters["knocks"], now + self._window())
        self._update_knock_ports(now)

    def _window(self) -> float:
        """How long a first knock the kernel remembers can matter (and a second)."""
        return self.config.longest_sequence + 1.0

    def _calm(self, now: float) -> None:
        """While every knock goes to sesame after an overflow: is it over?"""
        if self.overflow is None or now < self.overflow[2]:
            return
        since, knocks, _ = self.overflow
        rate = (self.engine.counters["knocks"] - knocks) / max(now - since, 1e-3)
        if rate * self.config.longest_sequence > FIRST_SIZE / 2:
            self.overflow = (now, self.engine.counters["knocks"], now + self._window())
            return
        self.overflow = None
        log.info("calm again: the kernel remembers first knocks by itself")
        self._update_knock_ports(now)

    def _restore_replay(self, store: ReplayStore, wall: float) -> None:
        """Read the replay record back; if keys were lost, refuse what was stamped
        before now: those are the messages that could otherwise be replayed."""
        self.engine.replay.restore(store.load(wall), wall)
        if store.damaged:
            self.engine.not_before = wall
            log.warning(
                "%s was damaged (%s): SPA datagrams and one-time sequences from before now"
                " are refused; fresh ones open",
                store.path,
                store.unreadable or f"{store.rejected} records that cannot be right",
            )

    @staticmethod
    def _store(config: Config) -> ReplayStore:
        return ReplayStore(config.server.state_dir, config.replay_horizon)

    def _recorded(self, spent: Spent, now: float) -> bool:
        """Put a spent key on record (before its grant); False if the state directory
        cannot take it, and then it opens nothing until it can (fail closed)."""
        if self.store is None:
            return True
        failing = self.store.error is not None
        if self.store.append(spent.key, spent.until):
            if failing:
                log.warning(
                    "%s is writable again: SPA and one-time sequences open", self.store.path
                )
            return True
        self.reports["not recorded"] += 1
        self._unrecorded(now)
        return False

    def _unrecorded(self, now: float) -> None:
        assert self.store is not None
        self._warn(
            "state",
            now,
            "cannot write %s (%s): accepted SPA datagrams and one-time sequences open"
            " nothing until it can be written",
            self.store.path,
            self.store.error,
        )

    def carry_out(self, actions: Sequence[Action], now: float) -> None:
        if not actions:
            return
        decisions: list[Decision] = []
        for action in actions:
            if isinstance(action, Spent):
                if self._recorded(action, now) and action.admit is not None:
                    decisions += self.engine.admit(action.admit, now)
            elif isinstance(action, SequenceUsed):
                self._next_sequence(action)
            else:
                decisions.append(action)
        if not decisions:
            return
        try:  # a door with gate = false only runs commands: its grants hold no element
            self.gate.apply(self.engine.elements(decisions), now)
        except FirewallError as exc:
            log.error("firewall refused a change: %s", exc)
        for decision in decisions:
            log.info("%s", describe(decision))
            door = self.config.doors_by_name.get(decision.grant.door)
            for argv in commands.plan(decision, door):
                self.runner.start(argv, now)

    def _load_one_time(self, config: Config) -> None:
        """Open the doors' one-time sequence files and give the engine their sequences."""
        self.one_time = {name: OneTimeFile(path) for name, path in config.one_time_files.items()}
        for name, sequences in self.one_time.items():
            self.engine.set_sequence(name, *sequences.next_two())

    def _next_sequence(self, used: SequenceUsed) -> None:
        """Mark a used one-time sequence in its file (as knockd does) and load the next."""
        sequences = self.one_time.get(used.door)
        if sequences is None:
            return
        upcoming: tuple[Port, ...] = ()
        try:
            sequences.spend(used.ports)
            following, upcoming = sequences.next_two()
        except OSError as exc:
            log.error("one-time sequences of door %s: %s; the door closes", used.door, exc)
            following = None
        self.engine.set_sequence(used.door, following, upcoming)
        if following is None:
            log.info("no one-time sequences left for door %s: it is closed", used.door)
        self._update_knock_ports(self.clock())

    def _update_knock_ports(self, now: float) -> None:
        """Tell the kernel the knock ports and which first knocks it keeps by itself."""
        ports = self.engine.knock_ports()
        first = None
        if self.config.first_stage and self.overflow is None:
            first = self.engine.first_ports()
        if ports == self.knock_ports and first == self.first:
            return
        entering = first is not None and self.first is None
        try:
            self.gate.set_knock_ports(ports, first, self.engine.tracked() if entering else None)
        except FirewallError as exc:
            log.error("firewall refused the new knock ports: %s", exc)
            return
        if first is None and self.first is not None:
            self.read_hits_until = now + self._window()  # what the kernel holds still counts
        elif first is not None:
            self.read_hits_until = float("inf")
        self.knock_ports, self.first = ports, first

    def tick(self, now: float) -> None:
        self.carry_out(self.engine.tick(now), now)
        if self.engine.roll(self.wall()) is not None:
            self._update_knock_ports(now)
        self._calm(now)
        if self.restore_after is not None and now >= self.restore_after:
            self.restore(now, "trying again")
        self.interface_here(now)
        self._compact(now)
        for name in self.engine.over_rate:
            self._warn(
                f"rate {name}",
                now,
                "%s sends more than %d SPA datagrams at once or %g a second: refused beyond",
                name,
                self.config.server.spa_burst,
                self.config.server.spa_rate,
            )
        self.engine.over_rate.clear()
        self.runner.reap(now)

    def interface_here(self, now: float) -> None:
        """Look for ``[server] interface``. While this host lacks it (it may come up
        after sesame at boot), every knock and SPA datagram is ignored: say so once a
        minute, look again every few seconds, and say when it appears."""
        if now < self.look_for_interface:
            return
        missing = host.missing_interface(self.config.server.interface)
        if missing is None:
            if self.look_for_interface:
                log.warning("interface %s is here now: knocks count", self.config.server.interface)
            self.look_for_interface = 0.0
            return
        self.look_for_interface = now + INTERFACE_EVERY
        self._warn("interface", now, "%s: knocks and SPA datagrams are ignored", missing)

    def _compact(self, now: float) -> None:
        """Rewrite the replay record once it has grown; if the disk refuses, go on
        appending to the old one and try again a minute later."""
        store = self.store
        if store is None or now < self.compact_after:
            return
        if store.should_compact(len(self.engine.replay)) and not store.compact(
            self.engine.replay.items()
        ):
            self.compact_after = now + COMPACT_RETRY
            self._warn("compact", now, "cannot compact %s: %s", store.path, store.error)

    def reload(self, load: Callable[[], Config]) -> None:
        """Apply a new config; refuse it whole on any fault."""
        store: ReplayStore | None = None
        try:
            new = load()
            path = new.path
            old = self.config.server
            for field in ("table", "log_group", "state_dir"):
                if getattr(new.server, field) != getattr(old, field):
                    raise ConfigError(path, 0, f"{field} cannot change on reload; restart")
            ports = knock_ports(new.doors, new.users, self.wall(), self.engine.replay)
            for file in new.one_time_files.values():
                current, upcoming = OneTimeFile(file).next_two()
                ports |= frozenset((current or ()) + upcoming)
            store = self._store(new) if new.needs_state and self.store is None else None
            # The kernel keeps the first knocks it holds; the first ports follow below.
            self.gate.install(new, (), ports, self.first if new.first_stage else None)
        except (ConfigError, FirewallError, FileRefused) as exc:
            log.error("reload refused, the running config stays: %s", exc)
            if store is not None:
                store.shut()
            return
        self.config = new
        if store is not None:
            self.store = store
            self._restore_replay(store, self.wall())
        now = self.clock()
        actions = self.engine.reconfigure(
            new.doors,
            new.users,
            fwknop=new.fwknop,
            max_sources=new.server.max_sources,
            spa_window=new.server.spa_window,
            now=now,
            spa_rate=new.server.spa_rate,
            spa_burst=new.server.spa_burst,
        )
        self.carry_out(actions, now)
        self._load_one_time(new)
        self.engine.roll(self.wall())
        self.knock_ports = ports  # what the kernel holds now; the engine's may differ
        self._update_knock_ports(now)
        log.info(
            "reloaded %s: %s",
            new.path,
            counts(new),
        )

    def timeout(self, now: float) -> float | None:
        waits = []
        deadline = self.engine.next_deadline()
        if deadline is not None:
            waits.append(deadline - now)
        roll = self.engine.next_roll()
        if roll is not None:
            waits.append(roll - self.wall())
        oldest = self.engine.replay.next_expiry()
        if oldest is not None:  # wake to forget replay keys only when there are some
            waits.append(oldest - self.wall() + 1.0)
        if self.runner.pending():
            waits.append(0.5)
        if self.overflow is not None:
            waits.append(self.overflow[2] - now)
        if self.engine.over_rate:
            waits.append(0.0)
        if self.restore_after is not None:
            waits.append(self.restore_after - now)
        if self.look_for_interface:
            waits.append(self.look_for_interface - now)
        return max(0.0, min([*waits, MAX_WAIT]))

    def reconcile(self, now: float) -> None:
        """Close the grants whose elements are gone from the kernel before their time
        (``sesame revoke``, an operator): they are logged as revoked, their doors'
        stop commands run, and a knock opens them anew (start commands run again)."""
        try:
            live = {(h.door, e.address) for e in self.gate.entries() for h in e.held()}
        except FirewallError as exc:
            log.error("cannot read the grants back: %s", exc)
            return
        gated = self.config.gated
        actions: list[Action] = []
        for grant in self.engine.grants.all():
            gone = (grant.door, grant.address) not in live
            if gone and grant.door in gated and grant.expires > now + 1.0:
                closed = self.engine.revoke(grant.door, grant.address)
                if closed is not None:
                    actions.append(closed)
        self.carry_out(actions, now)

    def changed(self, verdict: Verdict, now: float) -> None:
        """Another process changed sesame's table (see :mod:`sesame.firewall.watch`)."""
        by = ", ".join(f"process {pid}" for pid in verdict.by) or "another process"
        if verdict.unknown:
            log.warning("nftables changes were missed: checking table inet %s", self.table)
            if not self.gate.exists():
                self.restore(now, "the table is gone")
                return
            self.reconcile(now)
            self.restore(now, "changes were missed", grants=False)
            return
        if verdict.revoke:
            self.reconcile(now)
        if verdict.restore:
            if 0 in verdict.by and now < self.restored_at + 1.0:
                # A kernel that names no process: what it reports may be sesame's own
                # restore, which must not be restored again without end.
                self.restore_after = self.restored_at + 1.0
                return
            self.restore(now, f"{by} changed table inet {self.table}")

    @property
    def table(self) -> str:
        return self.config.server.table

    def restore(self, now: float, why: str, grants: bool = True) -> None:
        """Install the table again, with every live grant for the time it has left
        (unless the grant sets were left alone) and the sources sesame follows: the
        gate is never left open."""
        self.restored_at = now
        started = time.monotonic()
        held = self.engine.grants.all() if grants else []
        live = [g for g in held if g.door in self.engine.gated and g.expires > now]
        try:
            self.gate.install(self.config, (), self.knock_ports, self.first)
            self.gate.apply(self.engine.elements(Refreshed(g) for g in live), now)
            if self.first is not None:
                self.gate.set_knock_ports(self.knock_ports, self.first, self.engine.tracked())
        except FirewallError as exc:
            self.restore_after = now + 1.0
            log.error("%s; restoring it failed (%s): trying again in a second", why, exc)
            return
        self.restore_after = None
        self.reports["restored"] += 1
        log.warning(
            "%s: restored it with %d live grants in %.0f ms",
            why,
            len(live),
            (time.monotonic() - started) * 1000,
        )

    def counters(self) -> str:
        counts = dict(self.engine.counters) | {f"dropped {k}": v for k, v in self.drops.items()}
        counts |= self.reports
        return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"

    def close(self) -> None:
        self.runner.wait()
        if self.store is not None:
            self.store.shut()


def settle() -> None:
    """Move what the daemon holds after start (modules, config, keys) out of the
    garbage collector's sight: a full collection of it takes milliseconds, and would
    hold up a knock that arrives meanwhile. Objects are still freed when unused."""
    gc.collect()
    gc.freeze()


def serve(
    load: Callable[[], Config],
    gate: Gate,
    sensor: NflogSensor,
    monitor: TableMonitor | None = None,
) -> int:
    """Run the daemon loop until SIGTERM/SIGINT; ``load`` reads the config (again on
    SIGHUP); ``monitor`` tells of other processes' changes to the table. Returns the
    exit status."""
    config = load()
    daemon = Daemon(config, gate)
    daemon.start()
    watch = Watch(config.server.table, os.getpid())
    if monitor is not None:  # what happened while starting (sesame's own install, mostly)
        verdict = monitor.read(watch)
        if verdict:
            daemon.changed(verdict, time.monotonic())
    settle()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    received: list[signal.Signals] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))

    old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, note)
    poller = select.epoll()  # directly: the selectors layer costs a flood per wake-up
    sensor_fd = sensor.fileno()
    poller.register(sensor_fd, select.EPOLLIN)
    poller.register(wake_r.fileno(), select.EPOLLIN)
    monitor_fd = -1
    if monitor is not None:
        monitor_fd = monitor.fileno()
        poller.register(monitor_fd, select.EPOLLIN)
    log.info(
        "ready: table inet %s, %s, NFLOG group %d",
        config.server.table,
        counts(config),
        config.server.log_group,
    )
    try:
        while True:
            now = time.monotonic()
            wait = daemon.timeout(now)
            if sensor.batched:  # look again soon: back to one packet at a time when calm
                wait = 0.2 if wait is None else min(wait, 0.2)
            due = math.inf if wait is None else now + wait
            for fd, _ in poller.poll(-1 if wait is None else wait):
                now = time.monotonic()
                if fd == sensor_fd:
                    daemon.packets(sensor.read(), now)
                elif fd == monitor_fd and monitor is not None:
                    verdict = monitor.read(watch)
                    if verdict:
                        daemon.changed(verdict, now)
                else:
                    try:
                        while wake_r.recv(64):
                            pass
                    except BlockingIOError:
                        pass
            if daemon.taking and (len(daemon.taking) >= TAKE_BATCH or not poller.poll(0)):
                daemon.take_first_knocks()
            while received:
                signum = received.pop(0)
                if signum == signal.SIGUSR1:
                    log.info("counters: %s", daemon.counters())
                elif signum == signal.SIGUSR2:
                    daemon.reconcile(time.monotonic())
                elif signum == signal.SIGHUP:
                    log.info("SIGHUP: reloading %s", config.path)
                    daemon.reload(load)
                    settle()
                else:
                    log.info(
                        "%s: stopping; the table stays, grants expire in the kernel", signum.name
                    )
                    return 0
            now = time.monotonic()
            if now >= due:  # not on every wake: a flood wakes the loop thousands of times
                sensor.relax()
                daemon.tick(now)
    except SesameError as exc:
        log.error("%s", exc)
        return 1
    finally:
        signal.set_wakeup_fd(old_fd)
        poller.close()
        sensor.close()
        if monitor is not None:
            monitor.close()
        wake_r.close()
        wake_w.close()
        daemon.close()
        log.info("counters: %s", daemon.counters())
