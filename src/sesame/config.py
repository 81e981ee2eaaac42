"""Configuration: a TOML file becomes frozen, validated objects.

The loader checks only what TOML cannot say (types) and turns each value into what
its object takes; every rule about a value lives in the object it belongs to
(:class:`~sesame.settings.Server`, :class:`~sesame.doors.Door`,
:class:`~sesame.doors.User`), and the rules between items in
:func:`sesame.settings.check`. Every refusal names the file, the line and the reason
(``FILE:LINE: reason``), and happens before anything touches the firewall.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import MISSING, fields
from ipaddress import ip_address
from typing import Any

from sesame import toml
from sesame.basics import parse_flags, parse_port, parse_target
from sesame.cluster import settings as cluster_settings
from sesame.compat import fwknop as fwknop_compat
from sesame.crypto import decode_key, read_private
from sesame.doors import Door, User
from sesame.errors import ConfigError, FieldError
from sesame.privileges import because
from sesame.settings import Config, Server, check

__all__ = ["Config", "Lines", "Server", "load", "parse"]


class Lines:
    """Finds the line of a table or key in TOML text (the parser gives no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")

    _STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'")

    def __init__(self, text: str) -> None:
        self.text = text
        self._where: dict[tuple[str, int, str], int] | None = None

    @property
    def where(self) -> dict[tuple[str, int, str], int]:
        """(table, index, key) -> line, found when first asked (a file that loads
        never asks: 10,000 users are 40,000 lines)."""
        if self._where is None:
            self._where = self._find(self.text)
        return self._where

    def _find(self, text: str) -> dict[tuple[str, int, str], int]:
        where: dict[tuple[str, int, str], int] = {}
        table, index, depth = "", 0, 0
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            code = self._STRING.sub('""', line).split("#", 1)[0]
            if depth == 0:
                header = self._HEADER.match(code)
                if header:
                    table = header.group(2)
                    if header.group(1) == "[[":
                        index = counts.get(table, -1) + 1
                        counts[table] = index
                    else:
                        index = 0
                    where.setdefault((table, index, ""), number)
                    continue
                key = self._KEY.match(code)
                if key:
                    where.setdefault((table, index, key.group(1).strip('"')), number)
            depth = max(0, depth + code.count("[") - code.count("]"))
        return where

    def line(self, table: str, index: int = 0, key: str = "") -> int:
        return self.where.get((table, index, key)) or self.where.get((table, index, ""), 1)


# -- what TOML gives, as what the objects take ------------------------------------------

Convert = Callable[[Any, str], Any]  # (value, key) -> value, or FieldError


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise FieldError(key, f"{key} must be a string")
    return value


def _whole(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(key, f"{key} must be a whole number")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(key, f"{key} must be a number of seconds")
    return float(value)


def _rate(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(key, f"{key} must be a number of datagrams a second, 0.01 to 1000000")
    return float(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(key, f"{key} must be true or false")
    return value


def _port_list(parse: Callable[[Any], Any], example: str) -> Convert:
    def convert(value: Any, key: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise FieldError(key, f"{key} must be a list like {example}")
        try:
            return tuple(parse(item) for item in value)
        except (ValueError, TypeError) as exc:
            raise FieldError(key, f"{key}: {exc}") from None

    return convert


_ports = _port_list(parse_port, '["7000/tcp", "8000/udp"]')
# ``open``: this host's ports, or other hosts' (``10.0.5.20:22/tcp``)
_targets = _port_list(parse_target, '["22/tcp", "10.0.5.20:22/tcp"]')


def _dnat(value: Any, key: str) -> tuple[tuple[Any, Any], ...]:
    """``dnat = [{ port = "2222/tcp", to = "10.0.5.20:22" }]``."""
    shape = f'{key} must be a list like [{{ port = "2222/tcp", to = "10.0.5.20:22" }}]'
    if not isinstance(value, list):
        raise FieldError(key, shape)
    out = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"port", "to"}:
            raise FieldError(key, shape)
        try:
            local = parse_port(entry["port"])
            target = parse_target(f"{entry['to']}/{local.proto}")
        except (ValueError, TypeError) as exc:
            raise FieldError(key, f"{key}: {exc}") from None
        out.append((local, target))
    return tuple(out)


def _argv(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise FieldError(
            key,
            f'{key} must be a list of arguments like ["/usr/bin/logger", "{{ip}}"]'
            " (sesame runs no shell)",
        )
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise FieldError(key, f"{key} must be a list of strings")
    return tuple(value)


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise FieldError(key, f'{key} must be a list of door names, e.g. ["ssh"]')
    return tuple(value)


def _range(value: Any, key: str) -> tuple[int, int]:
    ok = isinstance(value, list) and len(value) == 2
    if not ok or not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        raise FieldError(key, f"{key} must be [FIRST, LAST], e.g. [40000, 40999]")
    return value[0], value[1]


def _flags(value: Any, key: str) -> tuple[int, int]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise FieldError(key, f'{key} must be a list like ["syn", "!ack"]')
    try:
        return parse_flags(",".join(value)) if value else (0, 0)
    except ValueError as exc:
        raise FieldError(key, f"{key}: {exc}") from None


def _address(value: Any, key: str) -> Any:
    try:
        return ip_address(str(value))
    except ValueError:
        raise FieldError(key, f"{key} must be an IP address") from None


# Each table's keys: one converter per field of its object (tests hold them equal).
SERVER: dict[str, Convert] = {
    "interface": _text,
    "public": _ports,
    "scanner_hold": _whole,
    "log_group": _whole,
    "known_log_group": _whole,
    "max_sources": _whole,
    "table": _text,
    "state_dir": _text,
    "spa_window": _whole,
    "spa_rate": _rate,
    "spa_burst": _whole,
    "spa_source_rate": _whole,
    "spa_source_burst": _whole,
    "log_file": _text,
    "pid_file": _text,
    "syslog": _bool,
    "log_format": _text,
    "metrics": _text,
}
DOOR: dict[str, Convert] = {
    "name": _text,
    "open": _targets,
    "dnat": _dnat,
    "masquerade": _bool,
    "sequence": _ports,
    "seq_timeout": _seconds,
    "open_for": _whole,
    "close_sequence": _ports,
    "start_command": _argv,
    "stop_command": _argv,
    "gate": _bool,
    "spa_port": _whole,
    "sequence_from": _text,
    "sequence_length": _whole,
    "port_range": _range,
    "one_address_per_user": _bool,
    "tcp_flags": _flags,
    "target": _address,
    "one_time_sequences": _text,
    "start_command6": _argv,
    "stop_command6": _argv,
    "scope": _text,
    "on_store_down": _text,
}
USER: dict[str, Convert] = {"name": _text, "doors": _names, "allow_other_address": _bool}
INTERNAL = {"knockd_mode", "key"}  # fields no TOML key sets directly


@functools.cache
def known(cls: type, extra: frozenset[str] = frozenset()) -> frozenset[str]:
    """The keys a table of ``cls`` takes: its fields, and ``extra``."""
    return frozenset({f.name for f in fields(cls)} - INTERNAL) | extra


@functools.cache
def _required(cls: type) -> tuple[str, ...]:
    return tuple(
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    )


def _build(
    cls: type,
    raw: dict[str, Any],
    convert: dict[str, Convert],
    what: str,
    extra: frozenset[str] = frozenset(),
    **given: Any,
) -> Any:
    """An object of ``cls`` from one TOML table: unknown and missing keys refused,
    values converted (``given``: those the caller converted); the object checks the
    rest."""
    _no_unknown(raw, known(cls, extra), what)
    for name in _required(cls):
        if name not in raw and name not in given:
            raise FieldError("", f"{what.strip('[]')} is missing {name!r}")
    values = {k: convert[k](v, k) for k, v in raw.items() if k in convert}
    return cls(**values, **given)


def _no_unknown(raw: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    for key in raw:
        if key not in allowed:
            listed = ", ".join(sorted(allowed))
            raise FieldError(key, f"unknown key {key!r} in {what} (known: {listed})")


def _user(raw: dict[str, Any]) -> User:
    _no_unknown(raw, known(User, KEY_KEYS), "[[user]]")  # first, as in every table
    if ("key" in raw) == ("key_file" in raw):
        raise FieldError("", "a user needs exactly one of 'key' and 'key_file'")
    if "key" in raw:
        if not isinstance(raw["key"], str):
            raise FieldError("key", "key must be a base64 string (sesame keygen NAME makes one)")
        text, where = raw["key"], "key"
    else:
        path = raw["key_file"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise FieldError("key_file", "key_file must be an absolute path")
        try:
            text, where = read_private(path, group=True).decode("ascii"), "key_file"
        except (ValueError, UnicodeDecodeError) as exc:
            raise FieldError("key_file", str(exc)) from None
    try:
        key = decode_key(text)
    except ValueError as exc:
        raise FieldError(where, str(exc)) from None
    user: User = _build(User, raw, USER, "[[user]]", KEY_KEYS, key=key)
    return user


KEY_KEYS = frozenset({"key", "key_file"})  # a [[user]]'s key, inline or in a file


# -- the file ----------------------------------------------------------------------------

_INLINE_KEY = re.compile(r"^\s*(key|key_base64|hmac_key|hmac_key_base64)\s*=", re.IGNORECASE)
TABLES = ("server", "door", "user", "fwknop", "cluster")


def load(path: str) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` on any fault. A file that
    holds keys itself is refused if others may read it (its group may: ``sesame``)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            mode = os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        why = because(path, exc)
        raise ConfigError(path, 0, f"cannot read: {why}") from None
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
        raw = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(path, int(found.group(1)) if found else 1, reason) from None
    lines = Lines(text)
    table, index = "", 0
    try:
        for table in raw:
            if table not in TABLES:
                raise FieldError(
                    "",
                    f"unknown table [{table}] (expected [server], [[door]], [[user]],"
                    " [[fwknop]], [cluster])",
                )
        table = "server"
        server_raw = raw.get("server", {})
        if not isinstance(server_raw, dict):
            raise FieldError("", "[server] must be a table")
        server = _build(Server, server_raw, SERVER, "[server]")
        doors: list[Door] = []
        users: list[User] = []
        for table, build in (("door", _door), ("user", _user)):
            items = _items(raw, table)
            for index, item in enumerate(items):  # noqa: B007 (the index names the item)
                (doors if table == "door" else users).append(build(item))  # type: ignore[arg-type]
        table, index = "fwknop", 0
        stanzas = tuple(
            fwknop_compat.from_toml(f, str(f.get("name", f"fwknop{i + 1}")), path, _line(lines, i))
            for i, f in enumerate(_items(raw, "fwknop"))
        )
        if not (doors or stanzas):
            table = "door"
            raise FieldError("", "no [[door]]: at least one door is needed")
        table = "cluster"
        cluster_raw = raw.get("cluster")
        if cluster_raw is not None and not isinstance(cluster_raw, dict):
            raise FieldError("", "[cluster] must be a table")
        cluster = None if cluster_raw is None else cluster_settings.from_toml(cluster_raw)
        config = Config(path, server, tuple(doors), tuple(users), stanzas, cluster)
        table = ""
        check(config)
    except FieldError as exc:
        where = (exc.table, exc.index) if exc.table else (table, index)
        raise ConfigError(path, lines.line(*where, exc.key), exc.reason) from None
    return config


def _door(raw: dict[str, Any]) -> Door:
    door: Door = _build(Door, raw, DOOR, "[[door]]")
    return door


def _items(raw: dict[str, Any], table: str) -> list[dict[str, Any]]:
    items = raw.get(table, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FieldError("", f"{table} entries are written [[{table}]]")
    return items


def _line(lines: Lines, index: int) -> Callable[[str], int]:
    def line(key: str) -> int:
        return lines.line("fwknop", index, key)

    return line
