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
from collections.abc import Callable, Sequence
from typing import Protocol

from sesame import config as configuration
from sesame.config import Config
from sesame.engine import Decision, Engine, Knock, Opened, Refreshed
from sesame.errors import ConfigError, FirewallError, RemoteError, SesameError
from sesame.firewall import commands
from sesame.firewall.ruleset import Entry, to_grants
from sesame.sensor import NflogSensor
from sesame.wire import decode
from sesame.wire.nflog import Logged
from sesame.wire.packet import ACK, SYN

log = logging.getLogger("sesame")


class Gate(Protocol):
    def install(self, config: Config, stale: Sequence[Entry] = ()) -> None: ...
    def apply(self, decisions: Sequence[Decision], now: float) -> None: ...
    def entries(self) -> list[Entry]: ...


def describe(decision: Decision) -> str:
    grant = decision.grant
    ports = " ".join(str(p) for p in grant.ports)
    if isinstance(decision, Opened):
        return f"opened door {grant.door} to {grant.address}: {ports}"
    if isinstance(decision, Refreshed):
        return f"refreshed door {grant.door} for {grant.address}: {ports}"
    return f"closed door {grant.door} for {grant.address} ({decision.reason})"


class Daemon:
    """Wires a sensor, the engine, a gate and a command runner together."""

    def __init__(
        self, config: Config, gate: Gate, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.gate = gate
        self.clock = clock
        self.engine = Engine(config.doors, config.server.max_sources)
        self.runner = commands.Runner()
        self.drops: dict[str, int] = {}

    def start(self) -> None:
        """Install the table (keeping live grants) and adopt the grants it holds."""
        now = self.clock()
        entries = self.gate.entries()
        doors = {d.name: d for d in self.config.doors if d.gate}
        keep = [e for e in entries if e.door in doors and e.port in doors[e.door].open]
        stale = [e for e in entries if e not in keep]
        self.gate.install(self.config, stale)
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
            if packet.port.proto == "tcp" and packet.tcp_flags & (SYN | ACK) != SYN:
                raise RemoteError("not a syn")
            log.debug("knock from %s to %s", packet.source, packet.port)
            decisions = self.engine.knock(Knock(packet.source, packet.port), now)
        except RemoteError as exc:
            self.drops[exc.reason] = self.drops.get(exc.reason, 0) + 1
            log.debug("dropped packet: %s", exc.reason)
            return
        self.carry_out(decisions, now)

    def carry_out(self, decisions: Sequence[Decision], now: float) -> None:
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
        self.runner.reap(now)

    def reload(self, path: str) -> None:
        """Apply a new config; refuse it whole on any fault."""
        try:
            new = configuration.load(path)
            if new.server.table != self.config.server.table:
                raise ConfigError(path, 0, "the table name cannot change on reload; restart")
            if new.server.log_group != self.config.server.log_group:
                raise ConfigError(path, 0, "log_group cannot change on reload; restart")
            self.gate.install(new)
        except (ConfigError, FirewallError) as exc:
            log.error("reload refused, the running config stays: %s", exc)
            return
        self.config = new
        now = self.clock()
        self.carry_out(self.engine.reconfigure(new.doors, new.server.max_sources, now), now)
        log.info("reloaded %s: %d doors", path, len(new.doors))

    def timeout(self, now: float) -> float | None:
        deadline = self.engine.next_deadline()
        wait = None if deadline is None else max(0.0, deadline - now)
        if self.runner.pending():
            wait = 0.5 if wait is None else min(wait, 0.5)
        return wait


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
        "ready: table inet %s, %d doors, NFLOG group %d",
        config.server.table,
        len(config.doors),
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
        daemon.runner.wait()
        counts = dict(daemon.engine.counters) | {f"dropped {k}": v for k, v in daemon.drops.items()}
        log.info("counters: %s", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")
