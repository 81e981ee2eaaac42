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

from sesame.config import Config
from sesame.daemon import Daemon
from sesame.errors import SesameError
from sesame.firewall.gate import Gate
from sesame.firewall.watch import Watch
from sesame.sensor import NflogSensor
from sesame.sensor.monitor import TableMonitor
from sesame.service.notify import Notifier
from sesame.service.report import counts, status

log = logging.getLogger("sesame")
TAKE_BATCH = 64  # first knocks read back before their sources are followed, at most
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


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
    received, old_fd = _catch_signals(wake_r, wake_w)
    poller = select.epoll()  # directly: the selectors layer costs a flood per wake-up
    sensor_fd, monitor_fd = sensor.fileno(), -1
    poller.register(sensor_fd, select.EPOLLIN)
    poller.register(wake_r.fileno(), select.EPOLLIN)
    if monitor is not None:
        monitor_fd = monitor.fileno()
        poller.register(monitor_fd, select.EPOLLIN)
    log.info(
        "ready: table inet %s, %s, NFLOG group %d",
        config.server.table,
        counts(config),
        config.server.log_group,
    )
    notifier = Notifier()
    notifier.ready(status(daemon.engine))
    try:
        while True:
            now = time.monotonic()
            wait = _least(daemon.timeout(now), notifier.wait(now))
            if sensor.batched:  # look again soon: back to one packet at a time when calm
                wait = _least(wait, 0.2)
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
                    _drain(wake_r)
            taking = daemon.engine.taking
            if taking and (len(taking) >= TAKE_BATCH or not poller.poll(0)):
                daemon.take_first_knocks()
            while received:
                if not _signalled(received.pop(0), daemon, load, notifier):
                    return 0
            now = time.monotonic()
            if now >= due:  # not on every wake: a flood wakes the loop thousands of times
                sensor.relax()
                daemon.tick(now)
                notifier.ping(now, lambda: status(daemon.engine))
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
        notifier.close()
        daemon.close()
        log.info("counters: %s", daemon.counters())


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


def _drain(wake: socket.socket) -> None:
    try:
        while wake.recv(64):
            pass
    except BlockingIOError:
        pass


def _least(wait: float | None, other: float | None) -> float | None:
    """The sooner of two waits (None: no limit)."""
    if wait is None or other is None:
        return other if wait is None else wait
    return min(wait, other)


def _signalled(
    signum: signal.Signals, daemon: Daemon, load: Callable[[], Config], notifier: Notifier
) -> bool:
    """Carry out a signal; False when it says stop."""
    if signum == signal.SIGUSR1:
        log.info("counters: %s", daemon.counters())
    elif signum == signal.SIGUSR2:
        daemon.reconcile(time.monotonic())
    elif signum == signal.SIGHUP:
        log.info("SIGHUP: reloading %s", daemon.config.path)
        notifier.reloading()
        daemon.reload(load)
        settle()
        notifier.ready(status(daemon.engine))
    else:
        notifier.stopping()
        log.info("%s: stopping; the table stays, grants expire in the kernel", signum.name)
        return False
    return True
