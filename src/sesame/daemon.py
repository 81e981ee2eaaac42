"""The daemon: sensor -> engine -> gate, one thread, one loop.

Signals: SIGTERM and SIGINT stop it; SIGHUP reloads the config (a refused config
leaves the running one in place). On stop the table stays installed, so the
guarded ports stay closed (fail closed) and live grants expire in the kernel.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from sesame import config as configuration
from sesame.config import Config
from sesame.engine import Action, Decision, Engine, Knock, Opened, Refreshed, Spent
from sesame.engine.core import knock_ports
from sesame.errors import ConfigError, FirewallError, RemoteError, SesameError
from sesame.firewall import commands
from sesame.firewall.ruleset import Entry, to_grants
from sesame.ports import Port
from sesame.sensor import NflogSensor
from sesame.state import ReplayStore
from sesame.wire import decode
from sesame.wire.nflog import Logged
from sesame.wire.packet import ACK, SYN

log = logging.getLogger("sesame")


class Gate(Protocol):
    def install(
        self, config: Config, stale: Iterable[Entry] = (), knock: Iterable[Port] | None = None
    ) -> None: ...
    def apply(self, decisions: Sequence[Decision], now: float) -> None: ...
    def entries(self) -> list[Entry]: ...
    def set_knock_ports(self, ports: Iterable[Port]) -> None: ...


def describe(decision: Decision) -> str:
    grant = decision.grant
    ports = " ".join(str(p) for p in grant.ports)
    by = f" (user {grant.user})" if grant.user else ""
    if isinstance(decision, Opened):
        return f"opened door {grant.door} to {grant.address}: {ports}{by}"
    if isinstance(decision, Refreshed):
        return f"refreshed door {grant.door} for {grant.address}: {ports}{by}"
    return f"closed door {grant.door} for {grant.address} ({decision.reason}){by}"


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
            max_sources=server.max_sources,
            spa_window=server.spa_window,
        )
        self.store = ReplayStore(server.state_dir) if config.needs_state else None
        self.runner = commands.Runner()
        self.drops: dict[str, int] = {}

    def start(self) -> None:
        """Install the table (keeping live grants) and adopt the grants it holds."""
        now, wall = self.clock(), self.wall()
        if self.store is not None:
            self.engine.replay.restore(self.store.load(wall), wall)
        entries = self.gate.entries()
        doors = {d.name: d for d in self.config.doors if d.gate}
        keep = [e for e in entries if e.door in doors and e.port in doors[e.door].open]
        stale = [e for e in entries if e not in keep]
        self.gate.install(self.config, stale, self.engine.roll(wall))
        self.engine.restore(to_grants(keep, now))
        for entry in keep:
            log.info(
                "kept grant of door %s for %s: %s (%.0fs left)",
                entry.door,
                entry.address,
                entry.port,
                entry.left,
            )

    def packet(self, item: Logged | RemoteError, now: float) -> None:
        """The one entry point for remote input: faults are counted and dropped."""
        try:
            if isinstance(item, RemoteError):
                raise item
            packet = decode(item.payload)
            port = packet.port
            if port.proto == "udp" and port.number in self.engine.spa_ports:
                actions = self.engine.spa(packet.source, port, packet.payload, now, self.wall())
            else:
                if port.proto == "tcp" and packet.tcp_flags & (SYN | ACK) != SYN:
                    raise RemoteError("not a syn")
                log.debug("knock from %s to %s", packet.source, port)
                actions = self.engine.knock(Knock(packet.source, port), now)
        except RemoteError as exc:
            self.drops[exc.reason] = self.drops.get(exc.reason, 0) + 1
            source = getattr(locals().get("packet"), "source", "?")
            log.debug("dropped packet from %s: %s", source, exc.reason)
            return
        self.carry_out(actions, now)

    def carry_out(self, actions: Sequence[Action], now: float) -> None:
        if not actions:
            return
        decisions: list[Decision] = []
        for action in actions:
            if isinstance(action, Spent):
                if self.store is not None:
                    self.store.append(action.key, action.until)  # on record before the grant
            else:
                decisions.append(action)
        if not decisions:
            return
        try:
            self.gate.apply(decisions, now)
        except FirewallError as exc:
            log.error("firewall refused a change: %s", exc)
        for decision in decisions:
            log.info("%s", describe(decision))
            door = self.config.doors_by_name.get(decision.grant.door)
            for argv in commands.plan(decision, door):
                self.runner.start(argv, now)

    def tick(self, now: float) -> None:
        self.carry_out(self.engine.tick(now), now)
        ports = self.engine.roll(self.wall())
        if ports is not None:
            try:
                self.gate.set_knock_ports(ports)
            except FirewallError as exc:
                log.error("firewall refused the new one-time sequences: %s", exc)
        if self.store is not None and self.store.should_compact(len(self.engine.replay)):
            self.store.compact(self.engine.replay.items())
        self.runner.reap(now)

    def reload(self, path: str) -> None:
        """Apply a new config; refuse it whole on any fault."""
        try:
            new = configuration.load(path)
            old = self.config.server
            for field in ("table", "log_group", "state_dir"):
                if getattr(new.server, field) != getattr(old, field):
                    raise ConfigError(path, 0, f"{field} cannot change on reload; restart")
            ports = knock_ports(new.doors, new.users, self.wall(), self.engine.replay)
            self.gate.install(new, (), ports)
        except (ConfigError, FirewallError) as exc:
            log.error("reload refused, the running config stays: %s", exc)
            return
        self.config = new
        if new.needs_state and self.store is None:
            self.store = ReplayStore(new.server.state_dir)
        now = self.clock()
        actions = self.engine.reconfigure(
            new.doors,
            new.users,
            max_sources=new.server.max_sources,
            spa_window=new.server.spa_window,
            now=now,
        )
        self.carry_out(actions, now)
        self.engine.roll(self.wall())
        log.info("reloaded %s: %d doors, %d users", path, len(new.doors), len(new.users))

    def timeout(self, now: float) -> float | None:
        waits = []
        deadline = self.engine.next_deadline()
        if deadline is not None:
            waits.append(deadline - now)
        roll = self.engine.next_roll()
        if roll is not None:
            waits.append(roll - self.wall())
        if self.config.needs_state:
            waits.append(5.0)  # prune the replay window now and then
        if self.runner.pending():
            waits.append(0.5)
        return max(0.0, min(waits)) if waits else None

    def close(self) -> None:
        self.runner.wait()
        if self.store is not None:
            self.store.close()


def serve(path: str, gate: Gate, sensor: NflogSensor) -> int:
    """Run the daemon loop until SIGTERM/SIGINT. Returns the exit status."""
    config = configuration.load(path)
    daemon = Daemon(config, gate)
    daemon.start()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    received: list[signal.Signals] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))

    old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, note)
    selector = selectors.DefaultSelector()
    selector.register(sensor.fileno(), selectors.EVENT_READ, "sensor")
    selector.register(wake_r, selectors.EVENT_READ, "signal")
    log.info(
        "ready: table inet %s, %d doors, %d users, NFLOG group %d",
        config.server.table,
        len(config.doors),
        len(config.users),
        config.server.log_group,
    )
    try:
        while True:
            now = time.monotonic()
            for key, _ in selector.select(daemon.timeout(now)):
                now = time.monotonic()
                if key.data == "sensor":
                    for item in sensor.read():
                        daemon.packet(item, now)
                else:
                    try:
                        while wake_r.recv(64):
                            pass
                    except BlockingIOError:
                        pass
            while received:
                signum = received.pop(0)
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: reloading %s", path)
                    daemon.reload(path)
                else:
                    log.info(
                        "%s: stopping; the table stays, grants expire in the kernel", signum.name
                    )
                    return 0
            daemon.tick(time.monotonic())
    except SesameError as exc:
        log.error("%s", exc)
        return 1
    finally:
        signal.set_wakeup_fd(old_fd)
        selector.close()
        sensor.close()
        wake_r.close()
        wake_w.close()
        daemon.close()
        counts = dict(daemon.engine.counters) | {f"dropped {k}": v for k, v in daemon.drops.items()}
        log.info("counters: %s", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")
