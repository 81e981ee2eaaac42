"""The client's config: ``~/.config/sesame/client.toml`` (or ``--client-config``).

It holds keys, so it is refused unless only its owner may read it::

    [[server]]
    name = "home"
    host = "203.0.113.5"
    user = "alice"
    key = "BASE64-32-BYTES"
    spa_port = 62201
    public_address = "stun:stun.example.org"   # behind NAT: or a literal address

    door = "ssh"                  # what `sesame connect home` opens

    [server.doors.ssh]            # an SPA door (no sequence, no port_range)
    open = ["22/tcp"]             # what it opens: `sesame connect home` connects to 22

    [server.doors.phone]          # a door with rolling one-time sequences
    port_range = [40000, 40999]
    sequence_length = 4

    [server.doors.web]            # a plain sequence (sesame's or knockd's server)
    sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
    open = ["443/tcp"]

A server whose doors are all plain sequences needs no ``user`` and ``key``.

    [[fwknop]]                    # an fwknop server: ~/.fwknoprc's variables in
    name = "office"               # lower case (`sesame import fwknop ~/.fwknoprc`)
    spa_server = "198.51.100.7"
    access = "tcp/22"
    key_base64 = "..."
    hmac_key_base64 = "..."
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from sesame import toml
from sesame.basics import FWKNOP_PORT, Port, parse_port
from sesame.config import Lines
from sesame.crypto import decode_key, read_private
from sesame.doors import NAME_RE
from sesame.errors import ConfigError
from sesame.wire import stun

DEFAULT = "~/.config/sesame/client.toml"
_SERVER_KEYS = {
    "name",
    "host",
    "user",
    "key",
    "key_file",
    "spa_port",
    "doors",
    "public_address",
    "door",
}
_DOOR_KEYS = {"port_range", "sequence_length", "sequence", "open"}


@dataclass(frozen=True, slots=True)
class ClientDoor:
    """A door as the client knows it: by SPA (neither sequence nor port_range), a plain
    ``sequence``, or rolling one-time sequences (``port_range``); ``open``: the ports it
    opens (the first TCP one is where ``sesame connect`` goes)."""

    port_range: tuple[int, int] | None = None
    sequence_length: int = 4
    sequence: tuple[Port, ...] = ()
    open: tuple[Port, ...] = ()

    @property
    def port(self) -> int | None:
        return next((p.number for p in self.open if p.proto == "tcp"), None)


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    host: str
    user: str
    key: bytes = field(repr=False)
    spa_port: int = FWKNOP_PORT
    doors: dict[str, ClientDoor] = field(default_factory=dict)
    # The address the server sees this client as, behind NAT: a literal address, or
    # "stun:HOST[:PORT]" to ask a STUN server.
    public_address: str | None = None
    door: str | None = None  # the door `sesame connect` and `sesame knock` open by default
    also: tuple[str, ...] = ()  # more hosts of the server (twins): each is knocked too


def _read(path: str | None) -> tuple[str, dict[str, Any], Lines]:
    path = os.path.expanduser(path or DEFAULT)
    try:
        text = read_private(path).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(path, 0, str(exc)) from None
    try:
        raw = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, int(found.group(1)) if found else 1, str(exc)) from None
    lines = Lines(text)
    for table in raw:
        if table not in ("server", "fwknop"):
            raise ConfigError(path, lines.line(table), f"unknown table [{table}]")
    return path, raw, lines


def fwknop(path: str | None = None) -> dict[str, list[tuple[int, str, str]]]:
    """The ``[[fwknop]]`` tables by name, as ~/.fwknoprc settings (line, NAME, value)
    for :mod:`sesame.compat.fwknoprc` to check and carry out."""
    path, raw, lines = _read(path)
    entries = raw.get("fwknop", [])
    if not isinstance(entries, list):
        raise ConfigError(path, lines.line("fwknop"), "fwknop servers are written [[fwknop]]")
    out: dict[str, list[tuple[int, str, str]]] = {}
    for i, entry in enumerate(entries):
        name, at = entry.get("name"), lines.line("fwknop", i, "name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(path, at, "[[fwknop]] needs a plain name")
        if name.lower() in out:
            raise ConfigError(path, at, f"{name!r} is used twice")
        settings = out.setdefault(name.lower(), [])
        for key, value in entry.items():
            where = lines.line("fwknop", i, key)
            if key == "name":
                continue
            if key != key.lower() or not isinstance(value, str | int | bool):
                raise ConfigError(path, where, f"{key}: an fwknop variable in lower case, a value")
            text = ("Y" if value else "N") if isinstance(value, bool) else str(value)
            settings.append((where, key.upper(), text))
    return out


def load(path: str | None = None) -> dict[str, Server]:
    """The servers of a client config by name; ConfigError (FILE:LINE: reason) if bad."""
    path, raw, lines = _read(path)
    servers: dict[str, Server] = {}
    entries = raw.get("server", [])
    if not isinstance(entries, list):
        raise ConfigError(path, lines.line("server"), "servers are written [[server]]")
    for i, entry in enumerate(entries):

        def fail(key: str, reason: str, i: int = i) -> ConfigError:
            return ConfigError(path, lines.line("server", i, key), reason)

        server = _server(entry, fail)
        if server.name in servers:
            raise fail("name", f"server name {server.name!r} is used twice")
        servers[server.name] = server
    return servers


def _server(raw: dict[str, Any], fail: Callable[[str, str], ConfigError]) -> Server:
    for key in raw:
        if key not in _SERVER_KEYS:
            raise fail(key, f"unknown key {key!r} in [[server]]")
    hosts = raw.get("host")
    if isinstance(hosts, list) and hosts and all(isinstance(h, str) and h for h in hosts):
        raw = raw | {"host": hosts[0]}
    elif isinstance(hosts, list):
        raise fail("host", "host must be a host name or address, or a list of them")
    for key in ("name", "host"):
        if not isinstance(raw.get(key), str):
            raise fail(key if key in raw else "", f"server is missing {key!r}")
    doors = {name: _door(name, door, fail) for name, door in (raw.get("doors") or {}).items()}
    keyless = bool(doors) and all(d.sequence for d in doors.values())
    user, secret = ("", b"") if keyless and "user" not in raw else _user_key(raw, fail)
    spa_port = raw.get("spa_port", FWKNOP_PORT)
    if isinstance(spa_port, bool) or not isinstance(spa_port, int) or not 1 <= spa_port <= 65535:
        raise fail("spa_port", "spa_port must be a port number")
    public = raw.get("public_address")
    if public is not None and not _public_address(public):
        raise fail(
            "public_address",
            'public_address must be an address or "stun:HOST[:PORT]" (a STUN server)',
        )
    default = raw.get("door")
    if default is not None and not (isinstance(default, str) and NAME_RE.match(default)):
        raise fail("door", "door must be the name of a door")
    also = tuple(hosts[1:]) if isinstance(hosts, list) else ()
    return Server(raw["name"], raw["host"], user, secret, spa_port, doors, public, default, also)


def _user_key(raw: dict[str, Any], fail: Callable[[str, str], ConfigError]) -> tuple[str, bytes]:
    if not isinstance(raw.get("user"), str):
        raise fail("user" if "user" in raw else "", "server is missing 'user'")
    if not NAME_RE.match(raw["user"]):
        raise fail("user", "user must be a plain name")
    if ("key" in raw) == ("key_file" in raw):
        raise fail("", "a server needs exactly one of 'key' and 'key_file'")
    try:
        if "key" in raw:
            return raw["user"], decode_key(str(raw["key"]))
        text = read_private(os.path.expanduser(str(raw["key_file"]))).decode()
        return raw["user"], decode_key(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail("key" if "key" in raw else "key_file", str(exc)) from None


def _door(name: str, raw: object, fail: Callable[[str, str], ConfigError]) -> ClientDoor:
    where = f"[server.doors.{name}]"
    if not isinstance(raw, dict) or set(raw) - _DOOR_KEYS:
        raise fail("doors", f"{where} takes port_range, sequence_length, sequence and open")
    try:
        sequence = tuple(parse_port(str(p)) for p in raw.get("sequence", ()))
        opens = tuple(parse_port(str(p)) for p in raw.get("open", ()))
        span = raw.get("port_range")
        port_range = None if span is None else (int(span[0]), int(span[1]))
        length = int(raw.get("sequence_length", 4))
    except (ValueError, TypeError, IndexError) as exc:
        raise fail("doors", f"{where}: {exc}") from None
    if sequence and port_range:
        raise fail("doors", f"{where}: a plain sequence or a port_range, not both")
    return ClientDoor(port_range, length, sequence, opens)


def _public_address(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        if value.startswith("stun:"):
            stun.target(value)
        else:
            ip_address(value)
    except ValueError:
        return False
    return "%" not in value
