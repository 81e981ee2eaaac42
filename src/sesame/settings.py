"""A server's settings as frozen, validated values: ``[server]``, and the whole
config with what follows from it. A value that breaks a rule raises
:class:`~sesame.errors.FieldError` naming its key; :func:`check` holds the rules
between items (names used twice, ports that clash). :mod:`sesame.config` reads them
from a file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sesame.basics import MAX_SOURCES, SYN_ONLY, Port
from sesame.cluster.settings import Cluster
from sesame.doors import (
    NAME_RE,
    Door,
    FwknopStanza,
    User,
    first_stage_allowed,
    longest_sequence,
)
from sesame.errors import FieldError

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
METRICS_RE = re.compile(
    r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):(?:[1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d\d|655[0-2]\d|6553[0-5])$"
)


@dataclass(frozen=True, slots=True)
class Server:
    """The ``[server]`` table."""

    interface: str | None = None
    public: tuple[Port, ...] = ()
    scanner_hold: int = 60
    log_group: int = 5155
    known_log_group: int = 5156  # SPA of sources that opened in the last hour: read first
    max_sources: int = 40_000
    table: str = "sesame"
    state_dir: str = "/var/lib/sesame"
    spa_window: int = 60
    spa_rate: float = 1.0  # accepted SPA datagrams a second per user (or fwknop stanza)
    spa_burst: int = 30  # ... and at once
    spa_source_rate: int = 20  # datagrams a second from one source (an IPv6 /64) the kernel
    spa_source_burst: int = 40  # ... and at once lets through to sesame's SPA ports
    log_file: str | None = None
    pid_file: str | None = None
    syslog: bool = False
    log_format: str = "text"  # or "json": a JSON object a line, for machines
    metrics: str | None = None  # "127.0.0.1:9155": Prometheus metrics at /metrics

    def __post_init__(self) -> None:
        if self.metrics is not None and not METRICS_RE.match(self.metrics):
            raise FieldError("metrics", 'metrics must be "HOST:PORT", e.g. "127.0.0.1:9155"')
        if self.log_format not in ("text", "json"):
            raise FieldError("log_format", 'log_format must be "text" or "json"')
        if self.interface is not None and not IFNAME_RE.match(self.interface):
            raise FieldError("interface", 'interface must be an interface name like "eth0"')
        if not NAME_RE.match(self.table) or "." in self.table:
            raise FieldError("table", "table must be a name of letters, digits, '_' or '-'")
        for key in ("state_dir", "log_file", "pid_file"):
            path = getattr(self, key)
            if path is not None and not path.startswith("/"):
                raise FieldError(key, f"{key} must be an absolute path")
        for key, lo, hi in RANGES:
            if not lo <= getattr(self, key) <= hi:
                raise FieldError(key, f"{key} must be a whole number from {lo} to {hi}")
        if self.known_log_group == self.log_group:
            raise FieldError("known_log_group", "known_log_group must differ from log_group")
        if not 0.01 <= self.spa_rate <= 1e6:
            raise FieldError(
                "spa_rate", "spa_rate must be a number of datagrams a second, 0.01 to 1000000"
            )

    def limits(self) -> dict[str, Any]:
        """The engine's settings from this table (see :class:`sesame.engine.Engine`)."""
        return {
            "max_sources": self.max_sources,
            "spa_window": self.spa_window,
            "spa_rate": self.spa_rate,
            "spa_burst": self.spa_burst,
        }


RANGES = (  # [server] whole numbers: key, least, most
    ("scanner_hold", 1, 86400),
    ("log_group", 1, 65535),
    ("known_log_group", 1, 65535),
    ("max_sources", 1, MAX_SOURCES),
    ("spa_window", 5, 3600),
    ("spa_burst", 1, 1_000_000),
    ("spa_source_rate", 1, 1_000_000),
    ("spa_source_burst", 1, 1_000_000),
)


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated server configuration."""

    path: str
    server: Server
    doors: tuple[Door, ...]
    users: tuple[User, ...] = ()
    fwknop: tuple[FwknopStanza, ...] = ()
    cluster: Cluster | None = None

    @property
    def needs_state(self) -> bool:
        """Does any door use one-shot keys (SPA, one-time sequences) to persist?"""
        keyed = any(d.spa_port is not None or d.sequence_from for d in self.doors)
        return keyed or bool(self.fwknop)

    @property
    def spa_ports(self) -> tuple[int, ...]:
        """Every UDP port that takes single-packet authorization (sesame's or fwknop's)."""
        ports = {d.spa_port for d in self.doors if d.spa_port is not None}
        return tuple(sorted(ports | {s.spa_port for s in self.fwknop}))

    @property
    def any_tcp_flags(self) -> bool:
        """Does a door take TCP packets other than SYNs (knockd's TCPFlags)? Then the
        kernel passes every TCP packet to a knock port, and the engine judges flags."""
        return any(d.tcp_flags != SYN_ONLY for d in self.doors)

    @property
    def first_stage(self) -> bool:
        """Can the kernel remember first knocks by itself (see ruleset)?"""
        return first_stage_allowed(self.doors)

    @property
    def longest_sequence(self) -> float:
        """How long a first knock counts (see doors.longest_sequence)."""
        return longest_sequence(self.doors)

    @property
    def one_time_files(self) -> dict[str, str]:
        return {d.name: d.one_time_sequences for d in self.doors if d.one_time_sequences}

    @property
    def one_address_per_user(self) -> bool:
        """Does a door keep one address per user (a user's grants elsewhere close)?"""
        return any(d.one_address_per_user for d in self.doors)

    @property
    def doors_by_name(self) -> dict[str, Door]:
        return {door.name: door for door in self.doors}

    @property
    def gated(self) -> dict[str, tuple[Port, ...]]:
        """What each door or fwknop stanza that gates in the kernel opens, by name."""
        opens = {d.name: d.open for d in self.doors if d.gate}
        return opens | {s.name: s.open_ports for s in self.fwknop}

    @property
    def guarded(self) -> tuple[Port, ...]:
        """Every port of this host a door gates in the kernel, each once."""
        return tuple(sorted({p for ports in self.gated.values() for p in ports if not p.host}))

    @property
    def forwarded(self) -> tuple[Port, ...]:
        """Every port of another host a door opens a path to (DNAT targets too), and
        FORCE_NAT's destinations."""
        doors = {p for d in self.doors if d.gate for p in d.forwards}
        return tuple(sorted(doors | {p for s in self.fwknop for p in s.forced}))

    @property
    def masqueraded(self) -> tuple[Port, ...]:
        """The other hosts' ports whose traffic leaves this host masqueraded."""
        doors = {p for d in self.doors if d.masquerade for p in d.forwards}
        return tuple(
            sorted(doors | {p for s in self.fwknop if s.force_masquerade for p in s.forced})
        )

    @property
    def nat(self) -> bool:
        """Does an fwknop stanza NAT (so the table needs its nat chains)?"""
        return any(s.nat for s in self.fwknop)

    @property
    def dnats(self) -> tuple[tuple[Port, Port], ...]:
        """This host's ports rewritten to other hosts', each once."""
        return tuple(sorted({pair for d in self.doors for pair in d.dnat}))

    @property
    def knock_ports(self) -> tuple[Port, ...]:
        """Every port that is part of some knock sequence, each once."""
        return tuple(sorted({p for d in self.doors for _, seq in d.sequences() for p in seq}))

    @property
    def replay_horizon(self) -> float:
        """How far ahead of the clock a replay key can expire, at most: a message may
        be stamped a window ahead and is kept a window after its stamp."""
        windows = [self.server.spa_window, 60] + [s.max_age for s in self.fwknop]
        return 2.0 * max(windows) + 1.0

    @property
    def hold(self) -> int:
        """How long a scanner stays marked: at least the longest seq_timeout."""
        return max(self.server.scanner_hold, int(-(-self.longest_sequence // 1)))


def check(config: Config) -> None:
    """The rules between the items of a config of sesame's own; FieldError names the
    item (``table``, ``index``) and its key."""
    _doors(config)
    _stanzas(config)
    _users(config)
    _scopes(config)


def _scopes(config: Config) -> None:
    """A door or stanza that names a cluster needs a [cluster]."""
    if config.cluster is not None:
        return
    doors: tuple[Door | FwknopStanza, ...] = config.doors
    for table, items, keys in (
        ("door", doors, ("scope", "on_store_down")),
        ("fwknop", config.fwknop, ("SESAME_SCOPE", "SESAME_ON_STORE_DOWN")),
    ):
        for i, item in enumerate(items):
            if item.scope != "local" or item.on_store_down is not None:
                key = keys[0] if item.scope != "local" else keys[1]
                raise FieldError(
                    key, f"{key} is for a cluster, and there is no [cluster]", table, i
                )


def _doors(config: Config) -> None:
    """Door names, sequences and ports that clash."""

    def fail(i: int, key: str, reason: str) -> FieldError:
        return FieldError(key, reason, "door", i)

    seen: dict[str, int] = {}
    patterns: list[tuple[int, str, tuple[Port, ...]]] = []
    for i, door in enumerate(config.doors):
        if door.name in seen:
            raise fail(i, "name", f"door name {door.name!r} is used twice")
        seen[door.name] = i
        for kind, seq in door.sequences():
            key = "sequence" if kind == "open" else "close_sequence"
            for j, other_key, other in patterns:
                short, long_ = sorted((seq, other), key=len)
                if long_[: len(short)] == short:
                    other_name = config.doors[j].name
                    raise fail(
                        i,
                        key,
                        f"{key} is ambiguous with door {other_name!r}'s "
                        f"{other_key}: one is a prefix of the other",
                    )
            patterns.append((i, key, seq))
    knock = set(config.knock_ports)
    public = set(config.server.public)
    rewritten: dict[Port, tuple[Port, str]] = {}
    for i, door in enumerate(config.doors):
        for local, target in door.dnat:
            to, by = rewritten.setdefault(local, (target, door.name))
            if to != target:
                raise fail(i, "dnat", f"{local} is rewritten to {to} by door {by!r}")
        for port in door.open:
            if port in knock:
                raise fail(i, "open", f"{port} is both opened and a knock port")
            if port in public:
                raise fail(i, "open", f"{port} is both opened by a door and public in [server]")
        for _, seq in door.sequences():
            for port in seq:
                if port in public:
                    raise fail(i, "sequence", f"{port} is both a knock port and public in [server]")
    for i, door in enumerate(config.doors):
        taken = {
            "guarded": set(config.guarded) | set(door.open),
            "a knock port": knock,
            "public in [server]": public,
        }
        if door.spa_port is not None:
            spa = Port("udp", door.spa_port)
            for what, ports in taken.items():
                if spa in ports:
                    raise fail(i, "spa_port", f"spa_port {spa} is also {what}")
        overlap = door.range_ports()
        for what, ports in taken.items():
            clash = sorted(overlap & ports)
            if clash:
                raise fail(i, "port_range", f"port_range includes {clash[0]}, which is {what}")


def _stanzas(config: Config) -> None:
    """fwknop stanzas whose names or ports clash with doors'."""

    def fail(i: int, key: str, reason: str) -> FieldError:
        return FieldError(key, reason, "fwknop", i)

    names = {d.name for d in config.doors}
    taken = set(config.knock_ports) | set(config.server.public)
    for i, stanza in enumerate(config.fwknop):
        # A port may take sesame's SPA and fwknop's both: they are told apart by content.
        if Port("udp", stanza.spa_port) in taken | set(config.guarded):
            raise fail(i, "spa_port", f"spa_port {stanza.spa_port}/udp is also in use")
        if stanza.name in names:
            raise fail(i, "name", f"name {stanza.name!r} is also a door's")
        names.add(stanza.name)
        clash = sorted(set(stanza.open_ports) & taken)
        if clash:
            raise fail(i, "open_ports", f"{clash[0]} is both opened and a knock or public port")


def _users(config: Config) -> None:
    """Users twice, doors no user may open, users of doors that take no key."""

    def fail(i: int, key: str, reason: str) -> FieldError:
        return FieldError(key, reason, "user", i)

    def fail_door(i: int, key: str, reason: str) -> FieldError:
        return FieldError(key, reason, "door", i)

    doors = config.doors_by_name
    seen: set[str] = set()
    for i, user in enumerate(config.users):
        if user.name in seen:
            raise fail(i, "name", f"user name {user.name!r} is used twice")
        seen.add(user.name)
        for name in user.doors:
            door = doors.get(name)
            if door is None:
                raise fail(i, "doors", f"no door is named {name!r}")
            if door.spa_port is None and door.sequence_from is None:
                raise fail(
                    i,
                    "doors",
                    f"door {name!r} has neither spa_port nor sequence_from: users open doors"
                    " by SPA or one-time sequence",
                )
    for i, door in enumerate(config.doors):
        keyed = door.spa_port is not None or door.sequence_from is not None
        if keyed and not any(door.name in u.doors for u in config.users):
            key = "spa_port" if door.spa_port is not None else "sequence_from"
            raise fail_door(
                i, key, f"no [[user]] may open door {door.name!r}: add it to a user's doors"
            )
