"""Doors and users: what a knock opens, and who may open it. Frozen values,
validated when built."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from sesame.basics import FWKNOP_PORT, SYN_ONLY, Port
from sesame.errors import FieldError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
MAX_SEQUENCE = 32
PLACEHOLDERS = ("{ip}", "{port}", "{proto}", "{door}", "{user}")
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Door:
    """One door: ways in (a plain sequence, SPA, one-time sequences) and what opens."""

    name: str
    open: tuple[Port, ...] = ()
    sequence: tuple[Port, ...] = ()
    seq_timeout: float = 25.0
    open_for: int = 30
    close_sequence: tuple[Port, ...] = ()
    start_command: tuple[str, ...] = ()
    stop_command: tuple[str, ...] = ()
    gate: bool = True
    spa_port: int | None = None
    sequence_from: str | None = None  # "totp": rolling one-time sequences per user
    sequence_length: int = 4
    port_range: tuple[int, int] | None = None
    one_address_per_user: bool = False
    tcp_flags: tuple[int, int] = SYN_ONLY  # must be set, must be clear: SYN, not ACK
    target: IPv4Address | IPv6Address | None = None  # knocks must be sent to this address
    one_time_sequences: str | None = None  # knockd's file of sequences, each used once
    start_command6: tuple[str, ...] = ()  # for IPv6 knockers (else start_command)
    stop_command6: tuple[str, ...] = ()
    knockd_mode: bool = False  # commands are knockd's /bin/sh lines with %IP%
    # A gateway's: this host's port -> another host's port (that host's address in
    # it), for the knocker only; the ports are added to ``open``.
    dnat: tuple[tuple[Port, Port], ...] = ()
    masquerade: bool = False  # other hosts' ports: replies return through this host
    scope: str = "local"  # "cluster": a grant opens on every node of the [cluster]
    on_store_down: str | None = None  # "refuse" or "local"; None: the [cluster]'s

    def __post_init__(self) -> None:
        self._gateway()
        check_scope(self.scope, self.on_store_down, "scope", "on_store_down")
        if not NAME_RE.match(self.name):
            raise FieldError(
                "name", f"door name {self.name!r} must be 1-32 letters, digits, '_', '.' or '-'"
            )
        for label, seq in (("sequence", self.sequence), ("close_sequence", self.close_sequence)):
            if len(seq) > MAX_SEQUENCE:
                raise FieldError(label, f"{label} has {len(seq)} ports; at most {MAX_SEQUENCE}")
        if not (self.sequence or self.spa_port or self.sequence_from or self.one_time_sequences):
            raise FieldError(
                "sequence", "sequence is empty: give a sequence, a spa_port or sequence_from"
            )
        if self.gate and not self.open:
            raise FieldError(
                "open", "door is missing 'open' (or it is empty): it would open nothing"
            )
        if not 0 < self.seq_timeout <= 3600:
            raise FieldError(
                "seq_timeout", "seq_timeout must be more than 0 and at most 3600 seconds"
            )
        if not 1 <= self.open_for <= 86400:
            raise FieldError("open_for", "open_for must be 1 to 86400 seconds")
        if self.spa_port is not None and not 1 <= self.spa_port <= 65535:
            raise FieldError("spa_port", f"spa_port {self.spa_port} is out of range 1-65535")
        if self.sequence_from is not None:
            if self.sequence_from != "totp":
                raise FieldError("sequence_from", 'sequence_from must be "totp"')
            if self.port_range is None:
                raise FieldError(
                    "sequence_from", 'sequence_from = "totp" needs port_range = [FIRST, LAST]'
                )
        if not 2 <= self.sequence_length <= 16:
            raise FieldError("sequence_length", "sequence_length must be 2 to 16")
        if self.port_range is not None:
            first, last = self.port_range
            if not 1 <= first <= last <= 65535 or last - first < 255:
                raise FieldError(
                    "port_range", "port_range must be [FIRST, LAST] in 1-65535, 256 ports or more"
                )
        if not self.gate and not self.start_command and not self.knockd_mode:
            raise FieldError(
                "start_command", "gate = false and no start_command: the door would open nothing"
            )
        relative = self.one_time_sequences and not self.one_time_sequences.startswith("/")
        if relative and not self.knockd_mode:  # knockd reads it where it runs
            raise FieldError("one_time_sequences", "one_time_sequences must be an absolute path")
        for label, argv in (
            ("start_command", self.start_command),
            ("stop_command", self.stop_command),
            ("start_command6", self.start_command6),
            ("stop_command6", self.stop_command6),
        ):
            if self.knockd_mode:
                continue
            if argv and not argv[0].startswith("/"):
                raise FieldError(
                    label, f"{label}: the program must be an absolute path, not {argv[0]!r}"
                )
            for arg in argv:
                for brace in re.findall(r"\{[^{}]*\}", arg):
                    if brace not in PLACEHOLDERS:
                        raise FieldError(
                            label,
                            f"{label}: unknown placeholder {brace}; use {', '.join(PLACEHOLDERS)}",
                        )

    def _gateway(self) -> None:
        """Checks of what a gateway's door opens on other hosts. Each DNAT joins
        ``open`` twice: its own port (the guard lets the knocker in) and the rewrite
        for the knocker alone (an element of the kernel's dnat map)."""
        for local, target in self.dnat:
            if local.host or not target.host or local.proto != target.proto:
                raise FieldError(
                    "dnat", 'dnat entries are { port = "2222/tcp", to = "10.0.5.20:22" }'
                )
        if self.dnat:
            rewrites = (Port(a.proto, a.number, b.host, b.number) for a, b in self.dnat)
            added = tuple(a for a, _ in self.dnat if a not in self.open)
            object.__setattr__(self, "open", self.open + added + tuple(rewrites))
        elsewhere = self.forwards
        if (elsewhere or self.dnat) and not self.gate:
            raise FieldError("gate", "a door that opens other hosts' ports must gate")
        if self.masquerade and not (elsewhere or self.dnat):
            raise FieldError("masquerade", "masquerade is for doors that open other hosts' ports")

    @property
    def forwards(self) -> tuple[Port, ...]:
        """What this door opens on other hosts: ports with a host, and DNAT targets."""
        return tuple(p for p in self.open if p.host and not p.to) + tuple(t for _, t in self.dnat)

    def commands(self, ipv6: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The (start, stop) commands for a knocker of this family."""
        if ipv6:
            return self.start_command6 or self.start_command, (
                self.stop_command6 or self.stop_command
            )
        return self.start_command, self.stop_command

    def sequences(self) -> tuple[tuple[str, tuple[Port, ...]], ...]:
        """The door's fixed knock sequences, each labelled ``open`` or ``close``."""
        out: list[tuple[str, tuple[Port, ...]]] = []
        if self.sequence:
            out.append(("open", self.sequence))
        if self.close_sequence:
            out.append(("close", self.close_sequence))
        return tuple(out)

    def range_ports(self) -> frozenset[Port]:
        """Every port a one-time sequence of this door may use."""
        if self.port_range is None:
            return frozenset()
        first, last = self.port_range
        return frozenset(Port("tcp", n) for n in range(first, last + 1))


@dataclass(frozen=True, slots=True)
class User:
    """Someone who holds a key: may open ``doors`` by SPA or one-time sequence."""

    name: str
    key: bytes = field(repr=False)
    doors: tuple[str, ...] = ()
    allow_other_address: bool = False

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise FieldError(
                "name", f"user name {self.name!r} must be 1-32 letters, digits, '_', '.' or '-'"
            )
        if len(self.key) != KEY_BYTES:
            raise FieldError("key", f"key must be {KEY_BYTES} bytes (base64), not {len(self.key)}")


def check_scope(scope: str, on_store_down: str | None, *keys: str) -> None:
    """A door's or stanza's ``scope`` and ``on_store_down`` (``keys``: their names)."""
    if scope not in SCOPES:
        raise FieldError(keys[0], f'{keys[0]} must be "local" or "cluster"')
    if on_store_down not in (None, *STORE_DOWN):
        raise FieldError(keys[1], f'{keys[1]} must be "refuse" or "local"')


SCOPES = ("local", "cluster")
STORE_DOWN = ("refuse", "local")


def first_stage_allowed(doors: Iterable[Door]) -> bool:
    """Can the kernel remember first knocks by itself (see ruleset)? Not when the
    engine must see a first knock's TCP flags or destination address."""
    return all(d.tcp_flags == SYN_ONLY and d.target is None for d in doors)


def longest_sequence(doors: Iterable[Door]) -> float:
    """The longest seq_timeout of a door that takes knocks: how long a first knock
    counts (an SPA door's seq_timeout means nothing)."""
    knocked = (
        d.seq_timeout for d in doors if d.sequences() or d.sequence_from or d.one_time_sequences
    )
    return max(knocked, default=0.0)


Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class FwknopStanza:
    """An fwknopd access.conf stanza: who may ask, with which keys, for which ports."""

    name: str
    key: bytes = field(repr=False)
    hmac_key: bytes | None = field(repr=False)
    open_ports: tuple[Port, ...]
    hmac_type: str = "sha256"
    sources: tuple[Network, ...] = ()  # empty: ANY
    destinations: tuple[Network, ...] = ()  # empty: ANY
    restrict_ports: tuple[Port, ...] = ()
    fw_access_timeout: int = 30
    max_fw_timeout: int = 300
    require_username: str | None = None
    allow_source_any: bool = False  # "-s" (0.0.0.0): only with REQUIRE_SOURCE_ADDRESS N
    allow_other_address: bool = False
    access_expire: float | None = None  # Unix time
    spa_port: int = FWKNOP_PORT
    max_age: int = 120
    encryption_mode: str = "cbc"  # or ctr, cfb, ofb, legacy (wire.fwknop.MODES)
    # fwknop's NAT: FORCE_NAT (address, port); the networks clients' NAT requests may
    # name (SESAME_NAT_DESTINATIONS); --nat-local allowed (SESAME_LOCAL_NAT); no DNAT,
    # only the path (DISABLE_DNAT); the NAT-ed traffic masqueraded or SNAT-ed.
    force_nat: tuple[str, int] | None = None
    nat_destinations: tuple[Network, ...] = ()
    local_nat: bool = False
    disable_dnat: bool = False
    force_masquerade: bool = False
    force_snat: str | None = None
    forward_all: bool = False  # every port of the destination, and any path on from it
    scope: str = "local"  # SESAME_SCOPE, as a door's scope
    on_store_down: str | None = None  # SESAME_ON_STORE_DOWN, as a door's

    @property
    def nat(self) -> bool:
        """Does this stanza NAT (forced, or at a client's request)?"""
        return self.force_nat is not None or bool(self.nat_destinations) or self.local_nat

    @property
    def forced(self) -> tuple[Port, ...]:
        """FORCE_NAT's destination, for either protocol."""
        if self.force_nat is None:
            return ()
        host, number = self.force_nat
        return (Port("tcp", number, host), Port("udp", number, host))

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"stanza name {self.name!r} must be a plain name")
        if not self.open_ports:
            raise ValueError("OPEN_PORTS is required: sesame gates only the ports it is told about")
        if not 1 <= self.fw_access_timeout <= 86400 or not 1 <= self.max_fw_timeout <= 86400:
            raise ValueError("FW_ACCESS_TIMEOUT and MAX_FW_TIMEOUT must be 1 to 86400 seconds")
        if not 1 <= self.spa_port <= 65535:
            raise ValueError(f"spa_port {self.spa_port} is out of range")
        check_scope(self.scope, self.on_store_down, "SESAME_SCOPE", "SESAME_ON_STORE_DOWN")

    def admits(
        self, source: IPv4Address | IPv6Address, destination: IPv4Address | IPv6Address | None
    ) -> bool:
        """Does SOURCE (and DESTINATION) of this stanza match the packet?"""
        return (not self.sources or any(source in n for n in self.sources)) and (
            not self.destinations
            or (destination is not None and any(destination in n for n in self.destinations))
        )
