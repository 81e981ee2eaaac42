"""The values every part of sesame shares, each defined once: ports (``PORT/PROTO``,
validated when built), addresses, TCP flags and the well-known port numbers. A leaf:
it imports nothing of sesame's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

Address = IPv4Address | IPv6Address


class _KeptHash:
    """The hash of an ipaddress address, worked out once: ipaddress does it anew each
    time (through a hex string), and a grant looks its address up a dozen times, in
    the engine's books and the gate's. Equal to, and hashed as, the ipaddress object of
    the same address: either finds the other in a dict."""

    __slots__ = ()
    _hash: int

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash = super().__hash__()  # type: ignore[misc]  # (the slot is each subclass's)
            return self._hash


class Host4(_KeptHash, IPv4Address):
    """An IPv4Address that keeps its hash."""

    __slots__ = ("_hash",)


class Host6(_KeptHash, IPv6Address):
    """An IPv6Address that keeps its hash (an address without a scope id)."""

    __slots__ = ("_hash",)


def host(address: Address) -> Address:
    """``address`` as a Host4 or Host6 (its hash worked out once), unless it has a
    scope id, which only IPv6Address keeps."""
    if isinstance(address, IPv4Address):
        return address if isinstance(address, Host4) else Host4(int(address))
    if isinstance(address, Host6) or address.scope_id is not None:
        return address
    return Host6(int(address))


Proto = Literal["tcp", "udp"]
PROTOS: tuple[Proto, ...] = ("tcp", "udp")

_PORT_RE = re.compile(r"^\s*(\d{1,5})\s*(?:[/:]\s*([A-Za-z]+)\s*)?$")
_TARGET_RE = re.compile(r"^\s*(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(.+)$")


@dataclass(frozen=True, slots=True, order=True)
class Port:
    """One transport port: a protocol and a number in 1..65535; with ``host`` (an
    address), that port of another host this one forwards to (a gateway's door); with
    ``to`` as well, this host's port ``number`` rewritten to ``host:to`` (a DNAT)."""

    proto: Proto
    number: int
    host: str = ""
    to: int = 0
    every: bool = False  # every port of ``host`` (fwknop's FORWARD_ALL); ``to``: rewritten
    # Worked out once: a grant's ports are keys in the engine's books and the gate's.
    _hash: int = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Port], tuple[Proto, int, str, int, bool]]:
        """Made anew where it is unpickled: the hash of a str is the process's own."""
        return Port, (self.proto, self.number, self.host, self.to, self.every)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.proto, self.number, self.host, self.to, self.every))
        )
        if self.proto not in PROTOS:
            raise ValueError(f"protocol must be tcp or udp, not {self.proto!r}")
        if not 1 <= self.number <= 65535:
            raise ValueError(f"port {self.number} is out of range 1-65535")
        if self.host and str(ip_address(self.host)) != self.host:  # ValueError: not one
            raise ValueError(f"write the address {self.host!r} as {ip_address(self.host)}")
        if self.to and (not self.host or not 1 <= self.to <= 65535):
            raise ValueError(f"a DNAT needs an address and a port 1-65535, not {self.to}")

    @property
    def address(self) -> Address | None:
        """The other host's address, or None for this host's own port."""
        return ip_address(self.host) if self.host else None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.every:
            return f"*->{host}:*" if self.to else f"{host}:*"
        if self.to:
            return f"{self.number}/{self.proto}->{host}:{self.to}"
        if not self.host:
            return f"{self.number}/{self.proto}"
        return f"{host}:{self.number}/{self.proto}"


def parse_port(text: str | int, default: Proto = "tcp") -> Port:
    """Parse ``7000``, ``"7000"``, ``"7000/udp"`` or knockd's ``"7000:udp"``."""
    if isinstance(text, bool):
        raise ValueError(f"not a port: {text!r}")
    if isinstance(text, int):
        return Port(default, text)
    match = _PORT_RE.match(text)
    if match is None:
        raise ValueError(f"not a port: {text!r} (expected PORT, PORT/tcp or PORT/udp)")
    proto = (match.group(2) or default).lower()
    if proto not in PROTOS:
        raise ValueError(f"unknown protocol {match.group(2)!r} in {text!r} (tcp or udp)")
    return Port("udp" if proto == "udp" else "tcp", int(match.group(1)))


def parse_target(text: str | int) -> Port:
    """A port of this host (as :func:`parse_port`), or of another host this one
    forwards to: ``10.0.5.20:22/tcp``, ``[fd00:5::20]:22/tcp``."""
    found = _TARGET_RE.match(text) if isinstance(text, str) else None
    if found is None:
        return parse_port(text)
    port = parse_port(found.group(3))
    try:
        host = ip_address(found.group(1) or found.group(2))
    except ValueError:
        raise ValueError(f"not an address in {text!r}") from None
    return Port(port.proto, port.number, str(host))


FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
FLAGS = {"FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH, "ACK": ACK, "URG": URG}
SYN_ONLY = (SYN, ACK)  # a connection attempt: SYN set, ACK clear (must be set, must be clear)

MAX_SOURCES = 1 << 18  # the kernel follows at most this many knocking sources at once
FIRST_SIZE = 16384  # first knocks the kernel remembers at once; beyond, sesame sees them all
FWKNOP_PORT = 62201  # fwknop's SPA port: sesame's SPA and fwknop's default to it


def parse_flags(text: str) -> tuple[int, int]:
    """knockd's TCPFlags ``syn,!ack``: (flags that must be set, flags that must be clear)."""
    must = must_not = 0
    for flag in (f.strip().upper() for f in text.split(",")):
        negate = flag.startswith("!")
        bit = FLAGS.get(flag.lstrip("!"))
        if bit is None:
            raise ValueError(f'unrecognized flag "{flag}"')
        if negate:
            must_not |= bit
        else:
            must |= bit
    return must, must_not
