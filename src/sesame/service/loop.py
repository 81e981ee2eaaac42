"""The daemon's loop: one thread, epoll over the sensor, the table monitor and a
self-pipe for signals. SIGTERM and SIGINT stop it; SIGHUP reloads the config (a
refused config leaves the running one in place); SIGUSR1 logs the counters; SIGUSR2
reads the grant sets back and closes the grants someone removed from the kernel."""

from __future__ import annotations

import gc
import logging
import math
import os
import select
import signal
import socket
import time
from collections.abc import Callable

from sesame import logs
from sesame.cluster.store import drain
from sesame.config import Config
from sesame.daemon import Daemon
from sesame.errors import SesameError
from sesame.firewall.gate import Gate
from sesame.firewall.watch import Watch
from sesame.sensor import NflogSensor
from sesame.sensor.monitor import TableMonitor
from sesame.service.control import Control, Listener
from sesame.service.notify import Notifier
from sesame.service.report import counts, status
from sesame.service.requests import answer

log = logging.getLogger("sesame")
# The collector's thresholds: a young collection every 20,000 allocations rather than
# 700, and fewer old ones. Grants, entries and records are not cycles; what a flood
# of them allocates was otherwise traversed again and again (a full collection of
# 100,000 live grants takes tens of milliseconds).
GC_THRESHOLDS = (20_000, 20, 50)
TAKE_BATCH = 64  # first knocks read back before their sources are followed, at most
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def settle() -> None:
    """Move what the daemon holds after start (modules, config, keys) out of the
    garbage collector's sight: a full collection of it takes milliseconds, and would
    hold up a knock that arrives meanwhile. Objects are still freed when unused."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()  # (off while starting: see cli.serve)


def serve(
    load: Callable[[], Config],
    gate: Gate,
    sensor: NflogSensor,
    monitor: TableMonitor | None = None,
    control: str | None = None,
    config: Config | None = None,
    known: NflogSensor | None = None,
) -> int:
    """Run the daemon loop until SIGTERM/SIGINT; ``load`` reads the config (again on
    SIGHUP; ``config``: the one it read already); ``monitor`` tells of other processes'
    changes to the table; ``control``: the path of the control socket (none without
    it); ``known``: the group of sources that opened lately, read first. Returns the
    exit status."""
    config = config or load()
    daemon = Daemon(config, gate)
    daemon.start()
    loop = Loop(daemon, load, sensor, monitor, known)
    try:
        if control is not None:
            loop.listen(control)
        if config.server.metrics is not None:
            loop.export(config.server.metrics, gate)
        log.info(
            "ready: table inet %s, %s, NFLOG group %d (known sources: %d)",
            config.server.table,
            counts(config),
            config.server.log_group,
            config.server.known_log_group,
        )
        loop.notifier.ready(status(daemon.engine))
        return loop.run()
    except SesameError as exc:
        log.error("%s", exc)
        return 1
    finally:
        loop.close()
        log.info("counters: %s", daemon.counters())


class Loop:
    """One thread: epoll over the sensor, the table monitor, the control socket and
    its clients, and a self-pipe for signals."""

    def __init__(
        self,
        daemon: Daemon,
        load: Callable[[], Config],
        sensor: NflogSensor,
        monitor: TableMonitor | None,
        known: NflogSensor | None = None,
    ) -> None:
        self.daemon, self.load, self.monitor = daemon, load, monitor
        self.sensors = (sensor,) if known is None else (sensor, known)
        self.watch = Watch(daemon.config.server.table, os.getpid())
        if monitor is not None:  # what happened while starting (sesame's own install)
            self.changed()
        settle()
        self.wake_r, self.wake_w = socket.socketpair()
        self.received, self.old_fd = _catch_signals(self.wake_r, self.wake_w)
        self.poller = select.epoll()  # directly: the selectors layer costs a flood per wake
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.on(sensor.fileno(), lambda _: self.packets(sensor))
        if known is not None:  # read before each batch of the other, and between its parts
            daemon.known = known.read
            self.on(
                known.fileno(),
                lambda _: daemon.packets(known.read(), time.monotonic(), heed=False),
            )
        self.on(self.wake_r.fileno(), lambda _: drain(self.wake_r))
        if monitor is not None:
            self.on(monitor.fileno(), lambda _: self.changed())
        if daemon.cluster is not None:
            self.on(daemon.cluster.fileno(), lambda _: daemon.heard(time.monotonic()))
        self.control: Control | None = None
        self.endpoint: Listener | None = None
        self.notifier = Notifier()

    def on(self, fd: int, handler: Callable[[int], None] | None) -> None:
        """Call ``handler`` when ``fd`` is readable (None: no longer)."""
        if handler is None:
            self.poller.unregister(fd)
            del self.handlers[fd]
        else:
            self.poller.register(fd, select.EPOLLIN)
            self.handlers[fd] = handler

    def listen(self, path: str) -> None:
        def client(fd: int, on: bool) -> None:
            self.on(fd, self._request if on else None)

        self.control = Control(path, client)
        control = self.control
        self.on(control.fileno(), lambda _: control.accept(time.monotonic()))

    def export(self, where: str, gate: Gate) -> None:
        """Serve Prometheus metrics on ``where`` (HOST:PORT)."""
        from sesame.service.metrics import Endpoint, Metrics  # only when asked: memory

        metrics = self.daemon.metrics = Metrics(self.daemon, gate.dropped)

        def client(fd: int, on: bool) -> None:
            self.on(fd, (lambda fd: endpoint.read(fd, endpoint.respond)) if on else None)

        endpoint = self.endpoint = Endpoint(where, metrics, client)
        self.on(endpoint.fileno(), lambda _: endpoint.accept(time.monotonic()))

    def _request(self, fd: int) -> None:
        assert self.control is not None
        self.control.serve(fd, lambda request: answer(self.daemon, request, self.reload))

    def packets(self, sensor: NflogSensor) -> None:
        """What the sensor read, judged; what the daemon's first look refuses (see
        Daemon.sieve) as the sensor splits it. (The group of sources that opened
        lately has none: what they send is judged whole.)"""
        now = time.monotonic()
        self.daemon.packets(sensor.read(self.daemon.sieve(now)), now)

    def changed(self) -> None:
        assert self.monitor is not None
        verdict = self.monitor.read(self.watch)
        if verdict:
            self.daemon.changed(verdict, time.monotonic())

    def reload(self) -> str | None:
        self.notifier.reloading()
        refused = self.daemon.reload(self.load)
        settle()
        self.notifier.ready(status(self.daemon.engine))
        return refused

    def run(self) -> int:
        daemon, sensors, notifier = self.daemon, self.sensors, self.notifier
        while True:
            now = time.monotonic()
            wait = _least(daemon.timeout(now), notifier.wait(now))
            for listener in (self.control, self.endpoint):
                expiry = None if listener is None else listener.next_expiry()
                wait = _least(wait, None if expiry is None else max(0.0, expiry - now))
            if any(s.batched for s in sensors):  # look again soon: one at a time when calm
                wait = _least(wait, 0.2)
            due = math.inf if wait is None else now + wait
            logs.write_held()  # what this turn logged, in one write, before the loop waits
            for fd, _ in self.poller.poll(-1 if wait is None else wait):
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler(fd)
            taking = daemon.engine.taking
            if taking and (len(taking) >= TAKE_BATCH or not self.poller.poll(0)):
                daemon.stage.take()
            while self.received:
                if not self.signalled(self.received.pop(0)):
                    return 0
            now = time.monotonic()
            for listener in (self.control, self.endpoint):
                if listener is not None:
                    listener.expire(now)
            if now >= due:  # not on every wake: a flood wakes the loop thousands of times
                for sensor in sensors:
                    sensor.relax()
                daemon.tick(now)
                notifier.ping(now, lambda: status(daemon.engine))

    def signalled(self, signum: signal.Signals) -> bool:
        """Carry out a signal; False when it says stop."""
        if signum == signal.SIGUSR1:
            log.info("counters: %s", self.daemon.counters())
        elif signum == signal.SIGUSR2:
            self.daemon.reconcile(time.monotonic())
        elif signum == signal.SIGHUP:
            log.info("SIGHUP: reloading %s", self.daemon.config.path)
            self.reload()
        else:
            self.notifier.stopping()
            log.info("%s: stopping; the table stays, grants expire in the kernel", signum.name)
            return False
        return True

    def close(self) -> None:
        signal.set_wakeup_fd(self.old_fd)
        for listener in (self.control, self.endpoint):
            if listener is not None:
                listener.close()
        self.poller.close()
        for sensor in self.sensors:
            sensor.close()
        if self.monitor is not None:
            self.monitor.close()
        self.wake_r.close()
        self.wake_w.close()
        self.notifier.close()
        self.daemon.close()


def _catch_signals(
    wake_r: socket.socket, wake_w: socket.socket
) -> tuple[list[signal.Signals], int]:
    """Note the signals the loop handles, and wake it through ``wake_w`` when one comes:
    the list they are noted in, and the wake-up fd there was before."""
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    received: list[signal.Signals] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))

    old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    for signum in SIGNALS:
        signal.signal(signum, note)
    return received, old_fd


def _least(wait: float | None, other: float | None) -> float | None:
    """The sooner of two waits (None: no limit)."""
    if wait is None or other is None:
        return other if wait is None else wait
    return min(wait, other)
