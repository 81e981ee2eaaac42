"""Per-door commands: argv lists with values substituted, never a shell."""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import time
from ipaddress import IPv6Address

from sesame.doors import Door
from sesame.engine.events import Closed, Decision, Opened, Refreshed

log = logging.getLogger("sesame")
_PLACEHOLDER = re.compile(r"\{(ip|port|proto|door|user)\}")
COMMAND_TIMEOUT = 60.0


def plan(decision: Decision, door: Door | None) -> list[list[str]]:
    """The argv lists a decision runs: the start command for each opened port, the
    stop command for each closed port; for a refresh, nothing (no stacking), unless
    the door has no stop command (then every knock runs its start command, as knockd)."""
    if door is None:
        return []
    grant = decision.grant
    start, stop = door.commands(isinstance(grant.address, IPv6Address))
    if isinstance(decision, Opened) or (isinstance(decision, Refreshed) and not stop):
        template = start
    elif isinstance(decision, Closed):
        template = stop
    else:
        return []
    if not template:
        return []
    if door.knockd_mode:  # %IP% in knockd's /bin/sh line; the address is a parsed one
        return [[arg.replace("%IP%", str(grant.address)) for arg in template]]
    ports = grant.ports or (None,)
    return [
        substitute(
            template,
            {
                "ip": str(grant.address),
                "port": str(port.number) if port else "",
                "proto": port.proto if port else "",
                "door": grant.door,
                "user": grant.user,
            },
        )
        for port in ports
    ]


def substitute(template: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """Replace ``{ip}``, ``{port}``, ``{proto}``, ``{door}`` in each argument; the
    values are never split or interpreted (no shell)."""
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]


class Runner:
    """Starts commands without waiting; reaps them, killing any that hang."""

    def __init__(self) -> None:
        self._running: list[tuple[subprocess.Popen[bytes], float, str]] = []

    def start(self, argv: list[str], now: float) -> None:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, close_fds=True, start_new_session=True
            )
        except OSError as exc:
            log.error("command %s failed to start: %s", argv[0], exc.strerror)
            return
        self._running.append((process, now + COMMAND_TIMEOUT, argv[0]))

    def reap(self, now: float) -> None:
        still = []
        for process, deadline, name in self._running:
            code = process.poll()
            if code is None and now > deadline:
                process.kill()
                code = process.wait()
                log.error("command %s killed after %ds", name, COMMAND_TIMEOUT)
            if code is None:
                still.append((process, deadline, name))
            elif code != 0:
                log.warning("command %s exited with %d", name, code)
        self._running = still

    def pending(self) -> bool:
        return bool(self._running)

    def wait(self, timeout: float = 5.0) -> None:
        """At shutdown: give running commands ``timeout`` seconds, then reap."""
        end = time.monotonic() + timeout
        for process, _, _ in self._running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, end - time.monotonic()))
        self.reap(time.monotonic())
