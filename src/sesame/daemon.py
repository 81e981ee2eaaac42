"""The daemon: sensor -> engine -> gate. The engine decides; the daemon carries out.

It catches and counts what remote input the engine refuses, carries out the engine's
actions (spent keys on record first, then grants in the gate, log lines, commands)
and its commands for the kernel's first stage, and hands the engine the clock. The
loop is :mod:`sesame.service.loop`; the other duties are in :mod:`sesame.service`.
On stop the table stays installed, so the guarded ports stay closed (fail closed)
and live grants expire in the kernel.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from sesame.basics import Address
from sesame.cluster.store import Store
from sesame.config import Config
from sesame.engine import Action, Decision, Engine, Opened, Refreshed, Spent
from sesame.engine.core import Output
from sesame.engine.events import SequenceUsed
from sesame.engine.first_stage import Draining
from sesame.engine.knocks import knock_ports
from sesame.errors import ConfigError, FirewallError, RemoteError
from sesame.files import FileRefused
from sesame.firewall import commands
from sesame.firewall.elements import to_grants
from sesame.firewall.gate import Gate
from sesame.firewall.ruleset import FULL, NOISE
from sesame.firewall.watch import Verdict
from sesame.service import audit, cluster, onetime, report
from sesame.service.keeper import AT_ONCE, Adoption, Keeper, adopt
from sesame.service.record import Record, store_for
from sesame.service.stage import Stage
from sesame.state import ReplayStore
from sesame.wire import decode
from sesame.wire.nflog import Logged, Sieve
from sesame.wire.packet import plain_udp

if TYPE_CHECKING:  # imported only when [server] metrics asks: it costs memory
    from sesame.service.metrics import Metrics

log = logging.getLogger("sesame")
FLUSH_EVERY = 16  # a grant waits for 16 packets at most
# Seconds of judging between two looks at the group of known sources (a look is a
# system call: after every few packets it cost a flood more than judging them).
HEED_AFTER = 0.00025
MAX_WAIT = 60.0  # the loop wakes at least this often, whatever a deadline says
RELOAD_FIXED = ("table", "log_group", "known_log_group", "state_dir")  # a restart changes these
KNOWN_FOR = 3600.0  # seconds a source that opened has its SPA heard first


class Daemon:
    """Wires the engine to a gate, a replay record and a command runner.

    ``clock`` is monotonic time (deadlines), ``wall`` is Unix time (SPA timestamps,
    one-time sequence steps); both are injected so tests can drive them.
    """

    def __init__(
        self,
        config: Config,
        gate: Gate,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        store: Store | None = None,
    ) -> None:
        """``store``: the cluster's (by default, the one ``[cluster]`` names)."""
        self.config, self.gate, self.clock, self.wall = config, gate, clock, wall
        self.engine = Engine(
            config.doors, config.users, fwknop=config.fwknop, **config.server.limits()
        )
        self.drops: dict[str, int] = {}
        self.reports: Counter[str] = Counter()  # what the kernel told, what failed
        self.warn = report.Warnings()
        self.record = Record(
            store_for(config) if config.needs_state else None, self.warn, self.reports
        )
        self.keeper = Keeper(self.engine, gate, self.carry_out, self.reports)
        self.interface = report.InterfaceWatch(self.warn)
        self.one_time = onetime.OneTimeFiles(self.engine)
        self.stage = Stage(self.engine, gate)
        self.runner = commands.Runner()
        self.refusals = audit.Refusals()
        self.metrics: Metrics | None = None  # set by the loop when [server] metrics asks
        self.cluster = cluster.of(config, self.engine, self.warn, store)
        self.debug = log.isEnabledFor(logging.DEBUG)
        # A flood's datagrams that are refused at sight are not decoded (debug: each
        # refusal is logged, so every datagram is judged whole).
        self.first_look = not self.debug
        self.adoption: Adoption | None = None  # grants from before, adopted while serving
        # The packets waiting in the group of sources that opened lately (set by the
        # loop): read before each batch and between its parts, to be judged first;
        # ``timer`` says how long a batch has been judged (not a decision's clock).
        self.known: Callable[[], Iterable[Logged | RemoteError]] | None = None
        self.timer: Callable[[], float] = time.perf_counter
        self.look = 0.0  # when the group of sources that opened lately is due (timer)
        self.opening: set[Address] = set()  # sources that opened, to be heard first

    def adopt(self, now: float, source: Address | None = None, user: bool = False) -> None:
        """While grants from before are adopted: those of ``source`` now (before
        anything is decided about it), or, with ``user`` (a user's grants at every
        address count) or no source, all that are left."""
        adoption = self.adoption
        if adoption is None:
            return
        if source is None or user:
            adoption.all(self.config, now)
        else:
            adoption.source(source, self.config, now)
        if adoption.done:
            self.adoption = None

    def start(self) -> None:
        """Install the table (keeping live grants) and adopt the grants it holds: at
        once if they are few, else while serving (:class:`Adoption`)."""
        now, wall = self.clock(), self.wall()
        self.record.start(self.engine, wall, now)
        listed = self.gate.listed()
        many = listed.left > AT_ONCE
        keep, stale, mixed = ([], [], []) if many else adopt(listed.rest(), self.config)
        self.one_time.load(self.config)
        self.engine.roll(wall)
        ports = self.engine.knock_ports()
        self.gate.install(self.config, stale, ports)
        self.engine.installed(ports)
        self.stage.run(self.engine.ports(now), now)
        self.engine.restore(to_grants(keep, now))
        if mixed:  # some holders are gone: the rest hold it until their own deadline
            self.gate.apply([self.engine.element(e.address, e.port) for e in mixed], now)
        if many:
            self.adoption = Adoption(listed, self.engine, self.gate, now)
            log.info("adopting %d grant elements from before while serving", listed.left)
        self.interface.look(self.config.server.interface, now)
        if self.cluster is not None:
            self.cluster.start()

    def packet(self, item: Logged | RemoteError, now: float) -> None:
        """Judge one packet and carry out what follows."""
        self.packets((item,), now)
        self.stage.take()

    def packets(self, items: Iterable[Logged | RemoteError], now: float, heed: bool = True) -> None:
        """Judge a batch of packets and carry out what follows FLUSH_EVERY packets at a
        time, in one firewall transaction (a flood of valid SPA costs one nft call per
        FLUSH_EVERY grants, not per packet, and one more at the end for the batch's
        sources that opened, to be heard first). With ``heed``, the SPA of sources that
        opened lately (:attr:`known`) goes first, and again after every HEED_AFTER
        seconds of judging and before the grants judged meanwhile are carried out: a
        flood that reaches sesame (datagrams naming a user, with a wrong key) fills a
        batch with hundreds, and a key holder who opened before should not wait behind
        them. What those sources send is judged as any other's; a stranger who forges
        such an address gets no more judged first than the kernel's budget for one
        source lets through."""
        known, timer = self.known if heed else None, self.timer
        if known is not None:
            self.judge_known(now)
        actions: list[Action] = []
        for n, item in enumerate(items, 1):
            outputs = self.judge(item, now)
            if outputs:
                actions += self.stage.run(outputs, now)
            flush = bool(actions) and n % FLUSH_EVERY == 0
            if known is not None and (flush or timer() >= self.look):  # before a flush
                self.judge_known(now)
            if flush:
                self.carry_out(actions, now, know=False)
                actions = []
        self.carry_out(actions, now)
        if self.engine.other_address:
            report.other_addresses(self.engine.other_address)

    def _know(self, now: float) -> None:
        """Have the kernel pass the SPA of the sources that opened to the group read
        first (:meth:`packets`), for KNOWN_FOR; a full set leaves them with the rest."""
        opened, self.opening = self.opening, set()
        try:
            self.gate.know(opened, KNOWN_FOR)
        except FirewallError as exc:
            self.warn("known", now, "sources that opened are not heard first: %s", exc)

    def judge(self, item: Logged | RemoteError, now: float) -> Sequence[Output]:
        """The one entry point for remote input: faults are counted and dropped, and
        a refused SPA datagram is written to the audit trail."""
        packet = None
        try:
            if isinstance(item, RemoteError):
                raise item
            packet = decode(item.payload)
            if self.adoption is not None:  # a knock decides for its source, maybe its user
                user = self.config.one_address_per_user and self.engine.kind(packet) == "knock"
                self.adopt(now, packet.source, user)
            prefix = item.prefix
            if prefix and prefix != FULL:
                if prefix == NOISE:  # from a source with a knock attempt in progress
                    return self.engine.noise(packet.source, now)
                report.kernel(prefix, self.warn, self.reports, self.config, now)
                return []
            if self.debug and self.engine.kind(packet) == "knock":
                log.debug("knock from %s to %s", packet.source, packet.port)
            return self.engine.packet(packet, now, self.wall(), prefix == FULL)
        except RemoteError as exc:
            self.drops[exc.reason] = self.drops.get(exc.reason, 0) + 1
            if self.debug:
                log.debug("dropped packet from %s: %s", packet and packet.source, exc.reason)
            if packet is not None and (kind := self.engine.kind(packet)) != "knock":
                self.refusals.refused(kind, packet.source, exc, packet.payload, now)
            return []

    def judge_known(self, now: float) -> None:
        """The SPA of sources that opened lately, judged now (see :meth:`packets`);
        the next look at them is due HEED_AFTER seconds of judging later."""
        assert self.known is not None
        self.packets(self.known(), now, heed=False)
        self.look = self.timer() + HEED_AFTER

    def sieve(self, now: float) -> Sieve | None:
        """The first look, for the sensor to take as it splits what it read (no
        Logged is made of what is refused at sight); None while the first look is
        off: with debug logging (each refusal is logged), and while grants from
        before are adopted (each source's packets decide for it). The SPA of sources
        that opened lately is heeded as :meth:`packets` heeds it, every HEED_AFTER
        seconds, also while the sieve takes all (a flood refused at sight)."""
        if not self.first_look or self.adoption is not None:
            return None
        heeding, timer = self.known is not None, self.timer

        def sieve(data: bytes) -> bool:
            if heeding and timer() >= self.look:
                self.judge_known(now)
            return self.refused_at_sight(now, data)

        return sieve

    def refused_at_sight(self, now: float, data: bytes) -> bool:
        """The first look at what a flood sends: a plain UDP datagram that the engine
        refuses from its bytes alone, while the audit trail writes no line (its budget
        of all is spent), is counted as :meth:`judge` counts it, and that is all; True
        then. False: judge it whole. (A wrongly keyed fwknop datagram costs less than
        half as much so; what it changes is the same: tests/unit/test_daemon.py.)"""
        found = plain_udp(data)
        if found is None:
            return False
        reason = self.engine.refusal(*found)
        if reason is None or not self.refusals.hushed("fwknop", reason, now):
            return False
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return True

    def carry_out(
        self, actions: Sequence[Action], now: float, share: bool = True, know: bool = True
    ) -> None:
        """Carry out the engine's actions; ``share``: tell the cluster's other nodes
        what opens or closes at cluster doors (not what they told this one). The
        sources that opened are heard first from then on (:meth:`_know`); without
        ``know``, from a later call's end on: a batch's parts make one transaction of
        them (:meth:`packets`), not one each."""
        decisions: list[Decision] = []
        spent = [a for a in actions if isinstance(a, Spent)]
        recorded = self.record.recorded(spent, now)
        for action in actions:
            if isinstance(action, Spent):
                admit = action.admit if recorded else None
                if admit is not None and self.cluster is not None:  # opens once claimed
                    admit = self.cluster.claim(action, now, self.wall(), len(spent) == 1)
                if admit is not None:
                    self.adopt(now, admit.address, admit.one_address)
                    decisions += self.engine.admit(admit, now)
            elif isinstance(action, SequenceUsed):
                self.one_time.used(action)
                self.stage.run(self.engine.ports(self.clock()), now)
            else:
                decisions.append(action)
        if decisions:
            self._decided(decisions, now, share)
        if self.cluster is not None:
            self.cluster.store.send()  # the claims and entries of this batch, at once
        if know and self.opening:
            self._know(now)

    def _decided(self, decisions: list[Decision], now: float, share: bool) -> None:
        """Put decisions in the kernel, tell the cluster, audit, run commands; the
        sources that opened are to be heard first (not before their grants)."""
        if share and self.cluster is not None:
            self.cluster.share(decisions, now, self.wall())
        try:  # a door with gate = false only runs commands: its grants hold no element
            self.gate.apply(self.engine.elements(decisions), now)
        except FirewallError as exc:
            log.error("firewall refused a change: %s", exc)
        for decision in decisions:
            audit.decision(decision)
            if self.metrics is not None:
                self.metrics.decided(decision, self.clock() - now)
            door = self.config.doors_by_name.get(decision.grant.door)
            for argv in commands.plan(decision, door):
                self.runner.start(argv, now)
        self.opening.update(
            d.grant.address for d in decisions if isinstance(d, (Opened, Refreshed))
        )

    def tick(self, now: float) -> None:
        if self.adoption is not None:
            self.adoption.some(self.config, now)
            self.adoption = None if self.adoption.done else self.adoption
        self.carry_out(self.engine.tick(now), now)
        if self.engine.roll(self.wall()) is not None:
            self.stage.run(self.engine.ports(now), now)
        self.stage.run(self.engine.stage_tick(now), now)
        self.keeper.tick(self.config, now)
        self.interface.look(self.config.server.interface, now)
        self.record.compact(self.engine, now)
        report.over_rate(self.warn, self.engine.over_rate, self.config, now)
        self.runner.reap(now)
        self.refusals.tick(now)
        if self.cluster is not None:
            self.cluster.tick(now, self.wall())

    def heard(self, now: float) -> None:
        """The cluster's store said something: claims made, other nodes' entries."""
        assert self.cluster is not None
        self.adopt(now)  # what other nodes tell may concern any source
        mine, told = self.cluster.events(now, self.wall())
        self.carry_out(mine, now)
        self.carry_out(told, now, share=False)

    def reload(self, load: Callable[[], Config]) -> str | None:
        """Apply a new config; refuse it whole on any fault (returned, and logged)."""
        store: ReplayStore | None = None  # (grants from before yet to adopt: by the new config)
        try:
            new = load()
            for field in RELOAD_FIXED:
                if getattr(new.server, field) != getattr(self.config.server, field):
                    raise ConfigError(new.path, 0, f"{field} cannot change on reload; restart")
            if new.cluster != self.config.cluster:
                raise ConfigError(new.path, 0, "[cluster] cannot change on reload; restart")
            ports = knock_ports(new.doors, new.users, self.wall(), self.engine.replay)
            ports |= onetime.ports_of(new)
            store = store_for(new) if new.needs_state and self.record.store is None else None
            # The kernel keeps the first knocks it holds; the first ports follow below.
            self.gate.install(new, (), ports, self.engine.stage.first if new.first_stage else None)
        except (ConfigError, FirewallError, FileRefused) as exc:
            log.error("reload refused, the running config stays: %s", exc)
            if store is not None:
                store.shut()
            return str(exc)
        self.config = new
        if self.cluster is not None:
            self.cluster.configure(new)
        if store is not None:
            self.record.adopt(self.engine, store, self.wall())
        now = self.clock()
        limits = new.server.limits()
        actions = self.engine.reconfigure(
            new.doors, new.users, fwknop=new.fwknop, now=now, **limits
        )
        self.carry_out(actions, now)
        self.one_time.load(new)
        self.engine.roll(self.wall())
        self.engine.installed(ports)  # what the kernel holds now; the engine's may differ
        self.stage.run(self.engine.ports(now), now)
        log.info("reloaded %s: %s", new.path, report.counts(new))
        return None

    def timeout(self, now: float) -> float | None:
        """How long the loop may sleep before something is due."""
        wall, stage = self.wall(), self.engine.stage
        deadlines = [
            self.engine.next_deadline(),
            self.keeper.retry_at,
            stage.check if isinstance(stage, Draining) else None,
            self.interface.next_look or None,
            self.cluster.next_beat if self.cluster is not None else None,
        ]
        waits = [d - now for d in deadlines if d is not None]
        roll = self.engine.next_roll()
        if roll is not None:
            waits.append(roll - wall)
        oldest = self.engine.replay.next_expiry()
        if oldest is not None:  # wake to forget replay keys only when there are some
            waits.append(oldest - wall + 1.0)
        if self.runner.pending():
            waits.append(0.5)
        if self.engine.over_rate or self.adoption is not None:
            waits.append(0.0)
        return max(0.0, min([*waits, MAX_WAIT]))

    def changed(self, verdict: Verdict, now: float) -> None:
        """Another process changed sesame's table (see :mod:`sesame.service.keeper`)."""
        self.adopt(now)
        self.keeper.changed(self.config, verdict, now)

    def reconcile(self, now: float) -> None:
        self.adopt(now)
        self.keeper.reconcile(now)

    def counts(self) -> dict[str, int]:
        """Every counter: the engine's, drops, the kernel's reports, the cluster's."""
        counts = dict(self.engine.counters) | {f"dropped {k}": v for k, v in self.drops.items()}
        counts |= self.reports
        return counts | (dict(self.cluster.counts) if self.cluster is not None else {})

    def counters(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items())) or "none"

    def close(self) -> None:
        self.runner.wait()
        self.record.close()
        if self.cluster is not None:
            self.cluster.close()
