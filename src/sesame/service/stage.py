"""The hands of the kernel's first stage: the engine's commands
(:mod:`sesame.engine.first_stage`) carried out in the gate."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sesame.basics import FIRST_SIZE, Address, Port
from sesame.engine import Action, Engine
from sesame.engine.core import Output
from sesame.engine.first_stage import Forget, ReadHit, SetPorts
from sesame.errors import FirewallError
from sesame.firewall.gate import Gate

log = logging.getLogger("sesame")


class Stage:
    """Carries out first-stage commands for an engine in a gate."""

    def __init__(self, engine: Engine, gate: Gate) -> None:
        self.engine = engine
        self.gate = gate

    def run(self, outputs: Iterable[Output], now: float) -> list[Action]:
        """Carry out the commands at once (a first knock read back must be judged
        before the knock that asked for it); return the other actions."""
        actions: list[Action] = []
        for out in outputs:
            if isinstance(out, ReadHit):
                actions += self.engine.first_knock(out, self.first_hit(out.source), now)
            elif isinstance(out, SetPorts):
                self.set_ports(out)
            elif isinstance(out, Forget):
                self.forget(out.source)
            else:
                actions.append(out)
        return actions

    def first_hit(self, source: Address) -> tuple[Port | None, float] | None:
        try:
            return self.gate.first_hit(source)
        except FirewallError as exc:
            log.error("cannot read the first knock of %s: %s", source, exc)
            return None

    def forget(self, source: Address) -> None:
        try:  # looked up first: a failed deletion aborts a transaction, which costs the
            # kernel milliseconds, and a scan sends noise in bursts
            if self.gate.first_hit(source) is not None:
                self.gate.forget_hit(source)
        except FirewallError as exc:
            log.error("cannot forget the first knock of %s: %s", source, exc)

    def set_ports(self, command: SetPorts) -> None:
        """Tell the kernel the knock ports and which first knocks it keeps by itself;
        the engine enters the new mode only if the kernel took them."""
        if command.reason == "full":
            log.warning(
                "%d first knocks in %.0fs: every knock now goes to sesame until calm returns",
                FIRST_SIZE,
                self.engine.longest,
            )
        elif command.reason == "calm":
            log.info("calm again: the kernel remembers first knocks by itself")
        tracked = self.engine.tracked() if command.tracked else None
        try:
            self.gate.set_knock_ports(command.ports, command.first, tracked)
        except FirewallError as exc:
            log.error("firewall refused the new knock ports: %s", exc)
            return
        self.engine.entered(command.mode)

    def take(self) -> None:
        """Forget the first knocks read back in the kernel, and follow their sources
        (the loop does it when no packet waits: the rest of a sequence goes first)."""
        taken = self.engine.follow()
        if taken:
            try:
                self.gate.take(taken, self.engine.longest)
            except FirewallError as exc:
                log.error("cannot follow the sources of first knocks: %s", exc)
