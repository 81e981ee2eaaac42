"""The kernel's first stage: who remembers a source's first knock, as a pure state
machine.

When every sequence has two ports or more, the kernel remembers a first knock by
itself (which first port a source hit, and when: the ``hits`` maps) and passes a
source's knocks to sesame only from its second knock on. sesame then reads the first
knock back and feeds it to the engine at the time it came, and has the kernel
follow that source (its knocks come straight to sesame from then on). A flood of
spoofed first knocks so costs sesame nothing. When the kernel's map is full, every
knock goes to sesame (which keeps ``max_sources``, least recently active out) until
calm returns.

Three modes, frozen values: :class:`Kernel` (it remembers first knocks),
:class:`Userspace` (every knock comes to sesame; first knocks the kernel took before
may be read back until ``read_until``) and :class:`Draining` (a :class:`Userspace`
after a full map, that looks at the knock rate every :func:`window`). Every
transition is a function that returns the new mode and the commands for the gate;
the caller carries the commands out and enters the new mode only if they worked
(a refused :class:`SetPorts` leaves the kernel, and so the mode, as it was).

======================  ==========================  ===================================
mode                    event                       new mode, commands
======================  ==========================  ===================================
any but Draining        ports: first ports wanted   Kernel; SetPorts (with the sources
                                                    sesame follows, when entering)
Kernel                  ports: no first ports       Userspace, read back until a
                        (a one-port sequence, or    window from now; SetPorts
                        tcp_flags / target doors)
Userspace               ports: no first ports       Userspace; SetPorts if they changed
Draining                ports: anything             Draining; SetPorts if they changed
Kernel                  full map                    Draining, read back until a window
                                                    from now; SetPorts (reason: full)
Userspace, Draining     full map                    unchanged
Draining                tick before its check       unchanged
Draining                tick, still busy            Draining, next check a window on
Draining                tick, calm                  as "ports" from Userspace (reason:
                                                    calm)
Kernel, or before       knock of a source sesame    unchanged; ReadHit
read_until              does not follow
Kernel, or before       noise of a source           unchanged; Forget
read_until
anything else           knock, noise, tick          unchanged, nothing
======================  ==========================  ===================================

"Busy": more than half the map's size of first knocks would come in one
``longest`` (the longest seq_timeout) at the rate seen since the last check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from sesame.basics import FIRST_SIZE, Address, Port
from sesame.engine.events import Knock

Ports = frozenset[Port]


@dataclass(frozen=True, slots=True)
class Kernel:
    """The kernel remembers first knocks on ``first`` by itself."""

    ports: Ports  # every knock port the kernel passes
    first: Ports

    @property
    def read_until(self) -> float:
        return math.inf


@dataclass(frozen=True, slots=True)
class Userspace:
    """Every knock comes to sesame; first knocks the kernel remembered before may be
    read back until ``read_until`` (engine time)."""

    ports: Ports
    read_until: float = 0.0
    first: None = None


@dataclass(frozen=True, slots=True)
class Draining:
    """After the kernel's map was full: every knock comes to sesame. ``knocks`` were
    counted at ``since``; at ``check`` the rate since then says whether it is calm."""

    ports: Ports
    read_until: float
    since: float
    knocks: int
    check: float
    first: None = None


Mode = Kernel | Userspace | Draining


@dataclass(frozen=True, slots=True)
class SetPorts:
    """Have the kernel pass ``ports`` and remember first knocks on ``first`` (None:
    every knock goes to sesame). ``tracked``: the sources sesame follows already,
    whose knocks must keep coming once the kernel remembers first knocks again. Enter
    ``mode`` once done."""

    ports: Ports
    first: Ports | None
    mode: Mode
    tracked: bool = False
    reason: Literal["", "full", "calm"] = ""


@dataclass(frozen=True, slots=True)
class ReadHit:
    """Read back the first knock the kernel remembers of ``source`` (if any) and feed
    it to the engine before ``then``, the knock that came now."""

    source: Address
    then: Knock


@dataclass(frozen=True, slots=True)
class Forget:
    """Delete the first knock the kernel remembers of ``source``, if any."""

    source: Address


Command = SetPorts | ReadHit | Forget


def window(longest: float) -> float:
    """How long a first knock the kernel remembers can matter (and a second), for the
    longest seq_timeout ``longest``."""
    return longest + 1.0


def ports(
    mode: Mode, ports: Ports, first: Ports | None, now: float, longest: float
) -> list[SetPorts]:
    """The knock ports (and the first ports wanted: None for none) changed, or may
    have: a new config, a new one-time sequence, a new time step."""
    if isinstance(mode, Draining) or first is None:
        if isinstance(mode, Kernel):
            return [SetPorts(ports, None, Userspace(ports, now + window(longest)))]
        if ports == mode.ports:
            return []
        if isinstance(mode, Draining):
            return [SetPorts(ports, None, replace(mode, ports=ports))]
        return [SetPorts(ports, None, Userspace(ports, mode.read_until))]
    if isinstance(mode, Kernel) and mode.ports == ports and mode.first == first:
        return []
    return [SetPorts(ports, first, Kernel(ports, first), tracked=not isinstance(mode, Kernel))]


def full(mode: Mode, now: float, knocks: int, longest: float) -> list[SetPorts]:
    """The kernel had no room for a first knock (``knocks`` counted so far)."""
    if not isinstance(mode, Kernel):
        return []
    later = now + window(longest)
    return [
        SetPorts(mode.ports, None, Draining(mode.ports, later, now, knocks, later), reason="full")
    ]


def tick(
    mode: Mode, now: float, knocks: int, first: Ports | None, longest: float
) -> tuple[Mode, list[SetPorts]]:
    """Time passed: while draining, is it calm again? ``first``: the first ports
    wanted once it is."""
    if not isinstance(mode, Draining) or now < mode.check:
        return mode, []
    rate = (knocks - mode.knocks) / max(now - mode.since, 1e-3)
    if rate * longest > FIRST_SIZE / 2:
        return replace(mode, since=now, knocks=knocks, check=now + window(longest)), []
    calm = Userspace(mode.ports, mode.read_until)
    commands = ports(calm, mode.ports, first, now, longest)
    return calm, [replace(c, reason="calm") for c in commands]


def knock(mode: Mode, source: Address, now: float, followed: bool, then: Knock) -> list[ReadHit]:
    """A knock from ``source`` came (``followed``: sesame holds its attempt, or has
    read its first knock back already)."""
    if followed or now >= mode.read_until:
        return []
    return [ReadHit(source, then)]


def noise(mode: Mode, source: Address, now: float) -> list[Forget]:
    """``source`` touched another port: its first knock, if the kernel holds one,
    must not count either."""
    return [Forget(source)] if now < mode.read_until else []
