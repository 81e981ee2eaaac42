"""Configuration: a TOML file becomes frozen, validated objects.

Every refusal names the file, the line and the reason (``FILE:LINE: reason``), and
happens before anything touches the firewall.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from sesame.basics import SYN_ONLY, Port, parse_flags, parse_port
from sesame.compat import fwknop as fwknop_compat
from sesame.crypto import decode_key, read_private
from sesame.doors import (
    NAME_RE,
    Door,
    FwknopStanza,
    User,
    first_stage_allowed,
    longest_sequence,
)
from sesame.errors import ConfigError

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
MAX_SOURCES = 1 << 18  # the kernel follows at most this many knocking sources at once


@dataclass(frozen=True, slots=True)
class Server:
    """The ``[server]`` table."""

    interface: str | None = None
    public: tuple[Port, ...] = ()
    scanner_hold: int = 60
    log_group: int = 5155
    max_sources: int = 40_000
    table: str = "sesame"
    state_dir: str = "/var/lib/sesame"
    spa_window: int = 60
    spa_rate: float = 1.0  # accepted SPA datagrams a second per user (or fwknop stanza)
    spa_burst: int = 30  # ... and at once
    log_file: str | None = None
    pid_file: str | None = None
    syslog: bool = False

    def limits(self) -> dict[str, Any]:
        """The engine's settings from this table (see :class:`sesame.engine.Engine`)."""
        return {
            "max_sources": self.max_sources,
            "spa_window": self.spa_window,
            "spa_rate": self.spa_rate,
            "spa_burst": self.spa_burst,
        }


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated server configuration."""

    path: str
    server: Server
    doors: tuple[Door, ...]
    users: tuple[User, ...] = ()
    fwknop: tuple[FwknopStanza, ...] = ()

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
    def doors_by_name(self) -> dict[str, Door]:
        return {door.name: door for door in self.doors}

    @property
    def gated(self) -> dict[str, tuple[Port, ...]]:
        """What each door or fwknop stanza that gates in the kernel opens, by name."""
        opens = {d.name: d.open for d in self.doors if d.gate}
        return opens | {s.name: s.open_ports for s in self.fwknop}

    @property
    def guarded(self) -> tuple[Port, ...]:
        """Every port a door gates in the kernel, each once."""
        return tuple(sorted({p for ports in self.gated.values() for p in ports}))

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


class Lines:
    """Finds the line of a table or key in TOML text (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        self.where: dict[tuple[str, int, str], int] = {}
        table, index, depth = "", 0, 0
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            code = re.sub(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'", '""', line).split("#", 1)[0]
            if depth == 0:
                header = self._HEADER.match(code)
                if header:
                    table = header.group(2)
                    if header.group(1) == "[[":
                        index = counts.get(table, -1) + 1
                        counts[table] = index
                    else:
                        index = 0
                    self.where.setdefault((table, index, ""), number)
                    continue
                key = self._KEY.match(code)
                if key:
                    self.where.setdefault((table, index, key.group(1).strip('"')), number)
            depth = max(0, depth + code.count("[") - code.count("]"))

    def line(self, table: str, index: int = 0, key: str = "") -> int:
        return self.where.get((table, index, key)) or self.where.get((table, index, ""), 1)


_SERVER_KEYS = {
    "interface",
    "public",
    "scanner_hold",
    "log_group",
    "max_sources",
    "table",
    "state_dir",
    "spa_window",
    "spa_rate",
    "spa_burst",
    "log_file",
    "pid_file",
    "syslog",
}
_USER_KEYS = {"name", "key", "key_file", "doors", "allow_other_address"}
_DOOR_KEYS = {
    "name",
    "sequence",
    "seq_timeout",
    "open",
    "open_for",
    "close_sequence",
    "start_command",
    "stop_command",
    "gate",
    "spa_port",
    "sequence_from",
    "sequence_length",
    "port_range",
    "one_address_per_user",
    "tcp_flags",
    "target",
    "one_time_sequences",
    "start_command6",
    "stop_command6",
}


_INLINE_KEY = re.compile(r"^\s*(key|key_base64|hmac_key|hmac_key_base64)\s*=", re.IGNORECASE)


def load(path: str) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` on any fault. A file that
    holds keys itself is refused if others may read it (its group may: ``sesame``)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            mode = os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        raise ConfigError(path, 0, f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, 1, "not UTF-8 text") from None
    config = parse(text, path)
    if mode & 0o007:
        for number, line in enumerate(text.splitlines(), 1):
            if _INLINE_KEY.match(line):
                raise ConfigError(
                    path,
                    number,
                    f"this file holds a key and others may read it (mode {mode & 0o777:04o}):"
                    f" run chmod 640 {path} (its group, and root, may read it), or move"
                    " the keys to key_file",
                )
    return config


def parse(text: str, path: str = "<config>") -> Config:
    """Validate TOML ``text``; ``path`` is only used in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(path, int(found.group(1)) if found else 1, reason) from None
    lines = Lines(text)

    def fail(table: str, index: int, key: str, reason: str) -> ConfigError:
        return ConfigError(path, lines.line(table, index, key), reason)

    for table in raw:
        if table not in ("server", "door", "user", "fwknop"):
            raise fail(
                table,
                0,
                "",
                f"unknown table [{table}] (expected [server], [[door]], [[user]], [[fwknop]])",
            )
    server_raw = raw.get("server", {})
    if not isinstance(server_raw, dict):
        raise fail("server", 0, "", "[server] must be a table")
    server = _server(server_raw, _bind(fail, "server", 0))
    doors_raw = raw.get("door", [])
    fwknop_raw = raw.get("fwknop", [])
    if not isinstance(fwknop_raw, list) or not all(isinstance(f, dict) for f in fwknop_raw):
        raise fail("fwknop", 0, "", "fwknop stanzas are written [[fwknop]]")
    if not isinstance(doors_raw, list) or not (doors_raw or fwknop_raw):
        raise fail("door", 0, "", "no [[door]]: at least one door is needed")
    doors: list[Door] = []
    for i, door_raw in enumerate(doors_raw):
        doors.append(_door(door_raw, _bind(fail, "door", i)))
    users_raw = raw.get("user", [])
    if not isinstance(users_raw, list):
        raise fail("user", 0, "", "users are written [[user]]")
    users = [_user(u, _bind(fail, "user", i)) for i, u in enumerate(users_raw)]
    stanzas = tuple(
        fwknop_compat.from_toml(
            f, str(f.get("name", f"fwknop{i + 1}")), path, _bind_line(lines, "fwknop", i)
        )
        for i, f in enumerate(fwknop_raw)
    )
    config = Config(path, server, tuple(doors), tuple(users), stanzas)
    _cross_checks(config, lambda i, k, r: fail("door", i, k, r))
    _fwknop_checks(config, lambda i, k, r: fail("fwknop", i, k, r))
    _user_checks(
        config, lambda i, k, r: fail("user", i, k, r), lambda i, k, r: fail("door", i, k, r)
    )
    return config


Fail = Callable[[str, str], ConfigError]


def _bind_line(lines: Lines, table: str, index: int) -> Callable[[str], int]:
    def line(key: str) -> int:
        return lines.line(table, index, key)

    return line


def _bind(fail: Callable[[str, int, str, str], ConfigError], table: str, index: int) -> Fail:
    def bound(key: str, reason: str) -> ConfigError:
        return fail(table, index, key, reason)

    return bound


def _check_keys(raw: dict[str, Any], allowed: set[str], what: str, fail: Fail) -> None:
    for key in raw:
        if key not in allowed:
            raise fail(key, f"unknown key {key!r} in {what} (known: {', '.join(sorted(allowed))})")


def _ports(raw: dict[str, Any], key: str, fail: Fail) -> tuple[Port, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise fail(key, f'{key} must be a list like ["7000/tcp", "8000/udp"]')
    try:
        return tuple(parse_port(item) for item in value)
    except (ValueError, TypeError) as exc:
        raise fail(key, f"{key}: {exc}") from None


def _int(raw: dict[str, Any], key: str, default: int, lo: int, hi: int, fail: Fail) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise fail(key, f"{key} must be a whole number from {lo} to {hi}")
    return value


def _rate(raw: dict[str, Any], fail: Fail) -> float:
    value = raw.get("spa_rate", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= 1e6:
        raise fail("spa_rate", "spa_rate must be a number of datagrams a second, 0.01 to 1000000")
    return float(value)


def _server(raw: dict[str, Any], fail: Fail) -> Server:
    _check_keys(raw, _SERVER_KEYS, "[server]", fail)
    interface = raw.get("interface")
    if interface is not None and (not isinstance(interface, str) or not IFNAME_RE.match(interface)):
        raise fail("interface", 'interface must be an interface name like "eth0"')
    table = raw.get("table", "sesame")
    if not isinstance(table, str) or not NAME_RE.match(table) or "." in table:
        raise fail("table", "table must be a name of letters, digits, '_' or '-'")
    state_dir = raw.get("state_dir", "/var/lib/sesame")
    if not isinstance(state_dir, str) or not state_dir.startswith("/"):
        raise fail("state_dir", "state_dir must be an absolute path")
    paths = {}
    for key in ("log_file", "pid_file"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.startswith("/")):
            raise fail(key, f"{key} must be an absolute path")
        paths[key] = value
    syslog = raw.get("syslog", False)
    if not isinstance(syslog, bool):
        raise fail("syslog", "syslog must be true or false")
    return Server(
        log_file=paths["log_file"],
        pid_file=paths["pid_file"],
        syslog=syslog,
        state_dir=state_dir,
        spa_window=_int(raw, "spa_window", 60, 5, 3600, fail),
        spa_rate=_rate(raw, fail),
        spa_burst=_int(raw, "spa_burst", 30, 1, 1_000_000, fail),
        interface=interface,
        public=_ports(raw, "public", fail),
        scanner_hold=_int(raw, "scanner_hold", 60, 1, 86400, fail),
        log_group=_int(raw, "log_group", 5155, 1, 65535, fail),
        max_sources=_int(raw, "max_sources", 40_000, 1, MAX_SOURCES, fail),
        table=table,
    )


def _argv(raw: dict[str, Any], key: str, fail: Fail) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        raise fail(
            key,
            f'{key} must be a list of arguments like ["/usr/bin/logger", "{{ip}}"]'
            " (sesame runs no shell)",
        )
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise fail(key, f"{key} must be a list of strings")
    if value and not value[0].startswith("/"):
        raise fail(key, f"{key}: the program must be an absolute path, not {value[0]!r}")
    return tuple(value)


def _bool(raw: dict[str, Any], key: str, fail: Fail) -> bool:
    value = raw.get(key, key == "gate")
    if not isinstance(value, bool):
        raise fail(key, f"{key} must be true or false")
    return value


def _knockd_style(raw: dict[str, Any], fail: Fail) -> dict[str, Any]:
    """The door keys that come from knockd: tcp_flags, target, one_time_sequences."""
    out: dict[str, Any] = {}
    if "tcp_flags" in raw:
        flags = raw["tcp_flags"]
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise fail("tcp_flags", 'tcp_flags must be a list like ["syn", "!ack"]')
        try:
            out["tcp_flags"] = parse_flags(",".join(flags)) if flags else (0, 0)
        except ValueError as exc:
            raise fail("tcp_flags", f"tcp_flags: {exc}") from None
    if "target" in raw:
        try:
            out["target"] = ip_address(str(raw["target"]))
        except ValueError:
            raise fail("target", "target must be an IP address") from None
    if "one_time_sequences" in raw:
        path = raw["one_time_sequences"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise fail("one_time_sequences", "one_time_sequences must be an absolute path")
        out["one_time_sequences"] = path
    return out


def _user(raw: Any, fail: Fail) -> User:
    if not isinstance(raw, dict):
        raise fail("", "[[user]] must be a table")
    _check_keys(raw, _USER_KEYS, "[[user]]", fail)
    if "name" not in raw:
        raise fail("", "user is missing 'name'")
    if ("key" in raw) == ("key_file" in raw):
        raise fail("", "a user needs exactly one of 'key' and 'key_file'")
    if "key" in raw:
        if not isinstance(raw["key"], str):
            raise fail("key", "key must be a base64 string (sesame keygen NAME makes one)")
        text, where = raw["key"], "key"
    else:
        text, where = _read_key_file(raw["key_file"], fail), "key_file"
    try:
        key = decode_key(text)
    except ValueError as exc:
        raise fail(where, str(exc)) from None
    doors = raw.get("doors", [])
    if not isinstance(doors, list) or not all(isinstance(d, str) for d in doors):
        raise fail("doors", 'doors must be a list of door names, e.g. ["ssh"]')
    try:
        return User(
            name=raw["name"] if isinstance(raw["name"], str) else "",
            key=key,
            doors=tuple(doors),
            allow_other_address=_bool(raw, "allow_other_address", fail),
        )
    except ValueError as exc:
        raise fail("name", str(exc)) from None


def _read_key_file(path: Any, fail: Fail) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise fail("key_file", "key_file must be an absolute path")
    try:
        return read_private(path).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail("key_file", str(exc)) from None


def _door(raw: Any, fail: Fail) -> Door:
    if not isinstance(raw, dict):
        raise fail("", "[[door]] must be a table")
    _check_keys(raw, _DOOR_KEYS, "[[door]]", fail)
    for key in ("name", "open"):
        if key not in raw and (key == "name" or raw.get("gate", True)):
            raise fail("", f"door is missing {key!r}")
    if not {"sequence", "spa_port", "sequence_from", "one_time_sequences"} & raw.keys():
        raise fail("", "door is missing 'sequence' (or 'spa_port', or 'sequence_from')")
    name = raw["name"]
    if not isinstance(name, str):
        raise fail("name", "name must be a string")
    seq_timeout = raw.get("seq_timeout", 25)
    if isinstance(seq_timeout, bool) or not isinstance(seq_timeout, int | float):
        raise fail("seq_timeout", "seq_timeout must be a number of seconds")
    gate, one_address = (_bool(raw, k, fail) for k in ("gate", "one_address_per_user"))
    sequence_from = raw.get("sequence_from")
    if sequence_from is not None and sequence_from != "totp":
        raise fail("sequence_from", 'sequence_from must be "totp"')
    port_range = raw.get("port_range")
    if port_range is not None:
        ok = isinstance(port_range, list) and len(port_range) == 2
        if not ok or not all(isinstance(n, int) and not isinstance(n, bool) for n in port_range):
            raise fail("port_range", "port_range must be [FIRST, LAST], e.g. [40000, 40999]")
        port_range = (port_range[0], port_range[1])
    extra = _knockd_style(raw, fail)
    fields = {
        "start_command6": _argv(raw, "start_command6", fail),
        "stop_command6": _argv(raw, "stop_command6", fail),
        "sequence": _ports(raw, "sequence", fail),
        "open": _ports(raw, "open", fail),
        "close_sequence": _ports(raw, "close_sequence", fail),
        "start_command": _argv(raw, "start_command", fail),
        "stop_command": _argv(raw, "stop_command", fail),
    }
    try:
        return Door(
            name=name,
            seq_timeout=float(seq_timeout),
            open_for=_int(raw, "open_for", 30, 1, 86400, fail),
            gate=gate,
            one_address_per_user=one_address,
            spa_port=_int(raw, "spa_port", 0, 1, 65535, fail) if "spa_port" in raw else None,
            sequence_from=sequence_from,
            sequence_length=_int(raw, "sequence_length", 4, 2, 16, fail),
            port_range=port_range,
            **extra,
            **fields,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        message = str(exc)
        key = max((k for k in _DOOR_KEYS if message.startswith(k)), key=len, default="name")
        raise fail(key, message) from None


def _cross_checks(config: Config, fail: Callable[[int, str, str], ConfigError]) -> None:
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
    for i, door in enumerate(config.doors):
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


def _fwknop_checks(config: Config, fail: Callable[[int, str, str], ConfigError]) -> None:
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


def _user_checks(
    config: Config,
    fail: Callable[[int, str, str], ConfigError],
    fail_door: Callable[[int, str, str], ConfigError],
) -> None:
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
