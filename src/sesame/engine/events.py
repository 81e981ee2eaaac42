"""Immutable values that flow into and out of the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sesame.basics import SYN, Address, Port

CloseReason = Literal["expired", "unknock", "revoked", "door removed", "replaced"]


@dataclass(frozen=True, slots=True)
class Knock:
    """A knock packet as the sensor saw it: who sent it, to which port."""

    source: Address
    port: Port
    flags: int = SYN  # the TCP flags (SYN unless told otherwise)
    destination: Address | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """An address may reach a door's ports until ``expires`` (engine time)."""

    door: str
    address: Address
    ports: tuple[Port, ...]
    expires: float
    user: str = ""  # who opened it (SPA, one-time sequence); empty for a plain knock


@dataclass(frozen=True, slots=True)
class Opened:
    """A new grant: open the ports (and run the door's start command)."""

    grant: Grant


@dataclass(frozen=True, slots=True)
class Refreshed:
    """An existing grant got a new deadline: one entry stays one entry."""

    grant: Grant


@dataclass(frozen=True, slots=True)
class Closed:
    """A grant ended: close the ports (and run the door's stop command)."""

    grant: Grant
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class Admission:
    """What an accepted one-shot message opens, once its key is on record: ``ports``
    of ``door`` (a door or fwknop stanza) to ``address`` for ``seconds``."""

    door: str
    address: Address
    ports: tuple[Port, ...]
    seconds: float
    user: str = ""
    one_address: bool = False  # the user's grants of this door at other addresses close
    per_port: bool = False  # a grant per port, each with its own deadline (fwknop)


@dataclass(frozen=True, slots=True)
class Spent:
    """A one-shot key was used: persist it so a restart cannot accept it again, then
    (only if that worked) hand ``admit`` back to the engine (:meth:`Engine.admit`),
    which opens it. A key that cannot be recorded opens nothing: fail closed."""

    key: bytes
    until: float  # wall time after which it could not be accepted anyway
    admit: Admission | None = None


@dataclass(frozen=True, slots=True)
class SequenceUsed:
    """A door's sequence from a one-time sequence file was used: mark it, load the next."""

    door: str
    ports: tuple[Port, ...]


@dataclass(frozen=True, slots=True)
class Element:
    """What the kernel must hold for one (address, port): an element that lasts until
    ``until`` (engine time), the latest deadline of the grants that hold it, listed in
    ``holders`` latest first; ``until`` None: nobody holds it, delete it. Doors may open
    the same port to the same address; each grant's end releases only its own hold.
    ``new``: its one holder is a grant that just opened, so the kernel should not hold
    it yet (the firewall may then just add it, and must check that it was not there)."""

    address: Address
    port: Port
    until: float | None
    holders: tuple[Grant, ...] = ()
    new: bool = False


Decision = Opened | Refreshed | Closed
Action = Decision | Spent | SequenceUsed
