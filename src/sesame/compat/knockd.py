"""knockd 0.8's knockd.conf, served as knockd serves it, or converted to sesame's TOML.

Every knockd 0.8 option works: [options] UseSyslog, LogFile, PidFile, Interface; per
door Sequence, One_Time_Sequences, Seq_Timeout (Timeout), TCPFlags, Start_Command
(Command), Start_Command_6 (Command_6), Cmd_Timeout, Stop_Command, Stop_Command_6,
Target. Keys are case-insensitive; an unknown key is an error, as in knockd.

Commands run through /bin/sh as knockd runs them, only in this mode, with %IP%
replaced by the knocker's address (always a valid address: it comes from the packet
header, parsed). Where knockd is known to be wrong sesame is not: a port scan cannot
complete a sequence, one-time sequences are compared whole, attempts are bounded,
and IPv6 knocks see the same one-time sequence as IPv4 ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from dataclasses import dataclass, field
from ipaddress import ip_address

from sesame.basics import FLAGS, Port, parse_flags
from sesame.config import Config, Server
from sesame.doors import MAX_SEQUENCE, Door
from sesame.errors import ConfigError

DEFAULT_INTERFACE = "eth0"
SEQ_TIMEOUT, CMD_TIMEOUT = 25, 10
DOOR_KEYS = {
    "TARGET",
    "SEQUENCE",
    "ONE_TIME_SEQUENCES",
    "SEQ_TIMEOUT",
    "TIMEOUT",
    "START_COMMAND",
    "COMMAND",
    "START_COMMAND_6",
    "COMMAND_6",
    "CMD_TIMEOUT",
    "STOP_COMMAND",
    "STOP_COMMAND_6",
    "TCPFLAGS",
}
OPTION_KEYS = {"LOGFILE", "PIDFILE", "INTERFACE"}


def parse_sequence(text: str, where: str = "") -> tuple[Port, ...]:
    """knockd's ``port[:tcp|udp],...`` (tcp by default, at most 32 ports)."""
    ports = []
    for item in text.split(","):
        number, _, proto = item.strip().partition(":")
        proto = proto.strip().lower() or "tcp"
        if proto not in ("tcp", "udp"):
            raise ValueError(f"{where}unknown protocol in knock sequence: {item.strip()!r}")
        if not number.strip().isdigit() or not 0 < int(number) <= 65535:
            raise ValueError(f"{where}port {number.strip()!r} is invalid")
        ports.append(Port("udp" if proto == "udp" else "tcp", int(number)))
    if len(ports) > MAX_SEQUENCE:
        raise ValueError(f"{where}too many ports in knock sequence (at most {MAX_SEQUENCE})")
    return tuple(ports)


@dataclass
class _Door:
    name: str
    line: int
    values: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class Parsed:
    options: dict[str, tuple[int, str]]
    syslog: bool
    doors: list[_Door]


def _parse(text: str, path: str) -> Parsed:
    options: dict[str, tuple[int, str]] = {}
    doors: list[_Door] = []
    syslog = False
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            if not section:
                raise ConfigError(path, number, "bad section name")
            if section != "options":
                doors.append(_Door(section, number))
            continue
        if not section:
            raise ConfigError(path, number, "all directives must belong to a section")
        key, eq, value = line.partition("=")
        key = key.strip().upper()
        if not eq:
            if key == "USESYSLOG":
                syslog = True
                continue
            raise ConfigError(path, number, f"syntax error: {key!r} needs a value")
        value = value.strip()
        if section == "options":
            if key not in OPTION_KEYS:
                raise ConfigError(path, number, f"syntax error: unknown option {key!r}")
            options[key] = (number, value)
        else:
            if key not in DOOR_KEYS:
                raise ConfigError(path, number, f"syntax error: unknown key {key!r}")
            doors[-1].values[key] = (number, value)
    return Parsed(options, syslog, doors)


def _door_name(name: str, taken: set[str]) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:32] or "door"
    if not safe[0].isalnum():
        safe = "d" + safe[:31]
    base, n = safe, 2
    while safe in taken:
        safe = f"{base[:28]}-{n}"
        n += 1
    taken.add(safe)
    return safe


def _shell(value: str | None) -> tuple[str, ...]:
    return ("/bin/sh", "-c", value) if value else ()


def load(path: str, interface: str | None = None) -> Config:
    """A knockd.conf as sesame's Config (doors that run knockd's commands)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(path, 0, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, 1, "not UTF-8 text") from None
    return from_text(text, path, interface)


def from_text(text: str, path: str, interface: str | None = None) -> Config:
    parsed = _parse(text, path)
    taken: set[str] = set()
    doors = tuple(_door(d, path, taken) for d in parsed.doors)
    if not doors:
        raise ConfigError(path, 1, "no door: knockd.conf has no [door] section")
    option = {k: v for k, (_, v) in parsed.options.items()}
    server = Server(
        interface=interface or option.get("INTERFACE") or DEFAULT_INTERFACE,
        log_file=option.get("LOGFILE"),
        pid_file=option.get("PIDFILE"),
        syslog=parsed.syslog,
    )
    return Config(path, server, doors)


def _door(raw: _Door, path: str, taken: set[str]) -> Door:
    values = raw.values

    def get(*keys: str) -> tuple[int, str] | None:
        for key in keys:
            if key in values:
                return values[key]
        return None

    def number(keys: tuple[str, ...], default: int) -> int:
        found = get(*keys)
        if found is None:
            return default
        try:
            return int(found[1])
        except ValueError:
            raise ConfigError(path, found[0], f"{keys[0]} must be a number") from None

    sequence: tuple[Port, ...] = ()
    found = get("SEQUENCE")
    try:
        if found is not None:
            sequence = parse_sequence(found[1], f"section {raw.name}: ")
        one_time = get("ONE_TIME_SEQUENCES")
        if one_time is not None:
            try:
                left = OneTimeFile(one_time[1]).current()
            except OSError as exc:
                raise ConfigError(
                    path, one_time[0], f"cannot read {one_time[1]}: {exc.strerror}"
                ) from None
            if left is None:
                raise ValueError(f"no sequences left in the one time sequences file {one_time[1]}")
        if not sequence and one_time is None:
            raise ValueError(f"section '{raw.name}' has an empty knock sequence")
        flags = get("TCPFLAGS")
        target = get("TARGET")
        start = get("START_COMMAND", "COMMAND")
        start6 = get("START_COMMAND_6", "COMMAND_6")
        stop, stop6 = get("STOP_COMMAND"), get("STOP_COMMAND_6")
        return Door(
            name=_door_name(raw.name, taken),
            open=(),
            gate=False,
            knockd_mode=True,
            sequence=sequence,
            one_time_sequences=one_time[1] if one_time else None,
            seq_timeout=float(max(1, number(("SEQ_TIMEOUT", "TIMEOUT"), SEQ_TIMEOUT))),
            open_for=max(1, number(("CMD_TIMEOUT",), CMD_TIMEOUT)),
            tcp_flags=parse_flags(flags[1]) if flags else (0, 0),
            target=ip_address(target[1]) if target else None,
            start_command=_shell(start[1] if start else None),
            start_command6=_shell(start6[1] if start6 else None),
            stop_command=_shell(stop[1] if stop else None),
            stop_command6=_shell(stop6[1] if stop6 else None),
        )
    except ValueError as exc:
        line = next((n for n, _ in values.values()), raw.line)
        for key in ("SEQUENCE", "ONE_TIME_SEQUENCES", "TCPFLAGS", "TARGET"):
            if key in values and key.lower().replace("_", " ") in str(exc).lower():
                line = values[key][0]
        if "flag" in str(exc) and "TCPFLAGS" in values:
            line = values["TCPFLAGS"][0]
        if ("port" in str(exc) or "protocol" in str(exc)) and "SEQUENCE" in values:
            line = values["SEQUENCE"][0]
        raise ConfigError(path, line, str(exc)) from None


class OneTimeFile:
    """knockd's One_Time_Sequences file: one sequence per line, used lines marked by
    overwriting their first byte with '#' (so lines should start with a space)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _lines(self) -> list[tuple[int, tuple[Port, ...]]]:
        out = []
        with open(self.path, "rb") as handle:
            data = handle.read()
        offset = 0
        for raw in data.splitlines(keepends=True):
            text = raw.decode("utf-8", "replace").strip()
            if text and not text.startswith("#"):
                with contextlib.suppress(ValueError):  # knockd skips lines it cannot parse
                    out.append((offset, parse_sequence(text)))
            offset += len(raw)
        return out

    def current(self) -> tuple[Port, ...] | None:
        """The first unused sequence, or None when the file is used up."""
        lines = self._lines()
        return lines[0][1] if lines else None

    def next_two(self) -> tuple[tuple[Port, ...] | None, tuple[Port, ...]]:
        """The current sequence and the one after it (its ports are passed to sesame
        ahead of time, so a quick knock of it is never taken for a scan)."""
        lines = self._lines()
        return (lines[0][1] if lines else None), (lines[1][1] if len(lines) > 1 else ())

    def spend(self, ports: tuple[Port, ...]) -> None:
        """Mark the first unused line holding exactly ``ports`` as used."""
        for offset, sequence in self._lines():
            if sequence == ports:
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    os.pwrite(fd, b"#", offset)
                finally:
                    os.close(fd)
                return


# -- sesame import knockd ----------------------------------------------------------------

_SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\\"'*?\[\]#~=%{}]|\s-\s*$")


def _argv_or_shell(command: str) -> tuple[list[str], bool]:
    """knockd's command as an argv list if it needs no shell, else ("sh -c", True)."""
    plain = command.replace("%IP%", "{ip}")
    if _SHELL_SYNTAX.search(command.replace("%IP%", "")) or not plain.startswith("/"):
        return ["/bin/sh", "-c", plain], True
    return shlex.split(plain), False


def _toml_list(items: list[str]) -> str:
    return (
        "["
        + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
        + "]"
    )


_IPTABLES = re.compile(r"-p\s+(tcp|udp)\b.*?--dport\s+(\d+)|--dport\s+(\d+).*?-p\s+(tcp|udp)\b")


_RULE_OP = re.compile(r"\s-(A|I|D)\s+(\S+)(\s+\d+)?")


def _rule(command: str) -> tuple[str, str] | None:
    """An iptables command's operation (``add``: -A or -I, ``delete``: -D) and the rule
    it names, or None when it is not one."""
    found = _RULE_OP.search(command)
    if not found or "iptables" not in command:
        return None
    rule = command[: found.start()] + f" {found.group(2)}" + command[found.end() :]
    return ("delete" if found.group(1) == "D" else "add"), " ".join(rule.split())


def _pairs(doors: list[_Door]) -> dict[str, str]:
    """knockd's open/close pairs (Debian's default file has one): a section whose one
    command adds an iptables rule, and a section whose one command deletes that very
    rule. Returns opener -> closer, by section name."""
    adds: dict[str, str] = {}
    deletes: dict[str, str] = {}
    for door in doors:
        values = door.values
        if "STOP_COMMAND" in values or "ONE_TIME_SEQUENCES" in values:
            continue
        command = (values.get("START_COMMAND") or values.get("COMMAND") or (0, ""))[1]
        found = _rule(command)
        if found is not None:
            (adds if found[0] == "add" else deletes).setdefault(found[1], door.name)
    return {opener: deletes[rule] for rule, opener in adds.items() if rule in deletes}


def to_toml(path: str) -> str:
    """sesame's TOML for a knockd.conf (validated first: a bad file is refused)."""
    config = load(path)
    with open(path, encoding="utf-8") as handle:
        parsed = _parse(handle.read(), path)
    server = config.server
    out = [f"# sesame config converted from {path} by `sesame import knockd`.", "", "[server]"]
    out.append(
        f'interface = "{server.interface}"   # knockd listens on one interface'
        " (eth0 unless told); remove this line to take knocks on all"
    )
    if server.syslog:
        out.append("syslog = true")
    if server.log_file:
        out.append(f'log_file = "{server.log_file}"')
    if server.pid_file:
        out.append(f'pid_file = "{server.pid_file}"')
    pairs = _pairs(parsed.doors)
    closers = {closer: opener for opener, closer in pairs.items()}
    by_name = {raw.name: (door, raw) for door, raw in zip(config.doors, parsed.doors, strict=True)}
    for door, raw in zip(config.doors, parsed.doors, strict=True):
        if raw.name in closers:
            continue  # it is the close_sequence of its opener's door
        closer = by_name.get(pairs.get(raw.name, ""))
        out += _door_toml(door, raw, closer)
    return "\n".join(out) + "\n"


def _door_toml(door: Door, raw: _Door, closer: tuple[Door, _Door] | None) -> list[str]:
    """One knockd section as a [[door]] (``closer``: the section that undoes it)."""
    out = ["", "[[door]]", f'name = "{door.name}"']
    if door.name != raw.name:
        out.append(f"# knockd's section was [{raw.name}]")
    if door.one_time_sequences:
        out.append(f'one_time_sequences = "{door.one_time_sequences}"')
    else:
        out.append("sequence = " + _toml_list([str(p) for p in door.sequence]))
    out.append(f"seq_timeout = {int(door.seq_timeout)}")
    must, must_not = door.tcp_flags
    flags = [n.lower() for n, b in FLAGS.items() if must & b]
    flags += ["!" + n.lower() for n, b in FLAGS.items() if must_not & b]
    out.append(
        "tcp_flags = "
        + _toml_list(flags)
        + (
            ""
            if flags
            else '   # any TCP packet counts (knockd); sesame\'s default is ["syn", "!ack"]'
        )
    )
    if door.target is not None:
        out.append(f'target = "{door.target}"')
    if closer is not None:
        out.append(
            "close_sequence = "
            + _toml_list([str(p) for p in closer[0].sequence])
            + f"   # knockd's [{closer[1].name}], which undid this section's command"
        )
    stops = any(k in raw.values for k in ("STOP_COMMAND", "STOP_COMMAND_6"))
    if closer is not None:
        out.append(
            f"open_for = {door.open_for}   # knockd kept the rule until the close"
            " sequence; sesame also undoes it after open_for (raise it, up to 86400)"
        )
        command = (closer[1].values.get("START_COMMAND") or closer[1].values["COMMAND"])[1]
        out.append(f"stop_command = {_toml_list(_argv_or_shell(command)[0])}")
    elif stops:
        out.append(
            f"open_for = {door.open_for}   # knockd's Cmd_Timeout: then the stop command runs"
        )
    else:
        out.append(
            f"open_for = {door.open_for}   # how long sesame keeps the grant (nothing runs"
            " at its end: knockd's section has no stop command)"
        )
    opened = set()
    for key, label in (
        ("START_COMMAND", "start_command"),
        ("COMMAND", "start_command"),
        ("START_COMMAND_6", "start_command6"),
        ("COMMAND_6", "start_command6"),
        ("STOP_COMMAND", "stop_command"),
        ("STOP_COMMAND_6", "stop_command6"),
    ):
        if key not in raw.values:
            continue
        command = raw.values[key][1]
        argv, shell = _argv_or_shell(command)
        if shell:
            out.append(
                f"# {label} needs a shell: sesame runs none unless you call one; consider a script"
            )
        out.append(f"{label} = {_toml_list(argv)}")
        found = _IPTABLES.search(command)
        if found and "-A" in command.split():
            port = found.group(2) or found.group(3)
            proto = found.group(1) or found.group(4)
            opened.add(f"{port}/{proto}")
    out.append("gate = false   # the commands do the opening, as in knockd")
    if opened:
        out.append(
            "# Better: let sesame gate the port in its own nftables table, with no"
            " commands and nothing to clean up:"
        )
        out.append(f"#   open = {_toml_list(sorted(opened))}, gate = true, and remove the commands")
    return out
