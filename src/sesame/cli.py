"""The ``sesame`` command."""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import getpass
import json
import logging
import logging.handlers
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address

from sesame import __version__, clientconfig, host
from sesame import config as configuration
from sesame.basics import FWKNOP_PORT, Port, parse_port
from sesame.crypto import decode_key, encode_key, new_key, read_private
from sesame.doors import NAME_RE
from sesame.errors import ConfigError, SesameError
from sesame.files import open_owned
from sesame.logs import FORMAT, Escaping, plural

DESCRIPTION = """\
sesame: port knocking for Linux. The host shows no open ports; a client who sends
the right knock gets the guarded port opened to its own address, for a while, in
sesame's own nftables table. Grants expire in the kernel, even if sesame dies."""


def _loader(args: argparse.Namespace) -> Callable[[], configuration.Config]:
    """How ``serve`` (and ``import``) read the config: sesame's TOML, a knockd.conf or an
    fwknopd access.conf, with command-line overrides."""

    def load() -> configuration.Config:
        if getattr(args, "knockd_conf", None):
            from sesame.compat import knockd

            config = knockd.load(args.knockd_conf, interface=args.interface)
        elif getattr(args, "fwknop_access", None):
            from sesame.compat import fwknop

            stanzas = fwknop.load_access(args.fwknop_access, args.fwknop_port)
            config = configuration.Config(
                args.fwknop_access, configuration.Server(), (), (), stanzas
            )
        else:
            config = configuration.load(args.config)
        if getattr(args, "state_dir", None):
            server = dataclasses.replace(config.server, state_dir=args.state_dir)
            config = dataclasses.replace(config, server=server)
        return config

    return load


def _serve(args: argparse.Namespace) -> int:
    from sesame.firewall import NftGate
    from sesame.sensor import NflogSensor
    from sesame.sensor.monitor import TableMonitor
    from sesame.service.loop import serve

    load = _loader(args)
    config = load()
    _log_outputs(config.server)
    sensor = NflogSensor(config.server.log_group)
    try:
        gate = NftGate(config.server.table)
        monitor = TableMonitor(config.server.table, gate.portid)
    except SesameError:
        sensor.close()
        raise
    pid_file = config.server.pid_file
    if pid_file:
        with open(open_owned(pid_file, truncate=True), "w") as handle:
            handle.write(f"{os.getpid()}\n")
    try:
        return serve(load, gate, sensor, monitor)
    finally:
        if pid_file:
            with contextlib.suppress(OSError):
                os.unlink(pid_file)


def _log_outputs(server: configuration.Server) -> None:
    """Besides stderr: a log file and syslog, when the config asks (knockd's options).
    The log file is opened without following a link, and must be sesame's own."""
    root = logging.getLogger("sesame")
    if server.log_file:
        fd = open_owned(server.log_file, append=True)
        handler: logging.Handler = logging.StreamHandler(open(fd, "a", buffering=1))  # noqa: SIM115
        handler.setFormatter(Escaping(FORMAT))
        root.addHandler(handler)
    if server.syslog:
        if os.path.exists("/dev/log"):
            handler = logging.handlers.SysLogHandler("/dev/log")
            handler.setFormatter(Escaping("sesame[%(process)d]: %(message)s"))
            root.addHandler(handler)
        else:
            root.warning("syslog asked for, but /dev/log is missing: logging to stderr only")


def _family(args: argparse.Namespace) -> int:
    return socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else socket.AF_UNSPEC


def _keyed_server(args: argparse.Namespace) -> clientconfig.Server:
    """The server to knock on by key: a name in the client config, or flags."""
    path = args.client_config
    default = os.path.expanduser(clientconfig.DEFAULT)
    servers = {}
    if path or os.path.exists(default):
        servers = clientconfig.load(path)
    if args.host in servers and not args.user:
        return servers[args.host]
    if not (args.user and args.key_file):
        where = path or default
        raise ValueError(f"{args.host!r} is not a server in {where}; give --user and --key-file")
    key = decode_key(read_private(os.path.expanduser(args.key_file)).decode("ascii", "replace"))
    return clientconfig.Server(args.host, args.host, args.user, key, args.spa_port or FWKNOP_PORT)


def _knock_fwknop(args: argparse.Namespace) -> int:
    """An fwknop-format SPA datagram, from a ~/.fwknoprc stanza or from flags."""
    from sesame import client
    from sesame.compat import fwknop
    from sesame.wire import fwknop as wire

    if args.fwknop_key_base64:
        try:
            key = base64.b64decode(args.fwknop_key_base64, validate=True)
            hmac_key = (
                base64.b64decode(args.fwknop_hmac_key_base64, validate=True)
                if args.fwknop_hmac_key_base64
                else None
            )
        except ValueError:
            raise ValueError("a key given on the command line is not valid base64") from None
        stanza = fwknop.RcStanza(args.host, args.host, FWKNOP_PORT, "", None, key, hmac_key)
    else:
        rc = os.path.expanduser(args.fwknop_rc or "~/.fwknoprc")
        stanza = fwknop.load_rc(rc, args.host)
    access = args.access or stanza.access
    if not access:
        raise ValueError("nothing to ask for: give -A tcp/22 (or ACCESS in the stanza)")
    port = args.spa_port or stanza.port
    fam, address = client.resolve(stanza.server, _family(args))
    allow = args.allow_ip or ("source" if args.source_any else stanza.allow_ip)
    if allow is None:
        allow = client.local_address(fam, address, port, args.source)
    elif allow.lower() == "source":
        allow = "0.0.0.0"
    ip_address(allow)  # a ValueError names a bad address before anything is sent
    payload = wire.encode(
        stanza.user or getpass.getuser(),
        f"{allow},{access}",
        stanza.key,
        stanza.hmac_key,
        timestamp=int(time.time()),
        client_timeout=args.fw_timeout if args.fw_timeout is not None else stanza.fw_timeout,
        hmac_type=args.hmac_digest_type or stanza.hmac_type,
    )
    if args.print_packet:
        print(payload.decode())
        return 0
    client.send_spa(fam, address, port, payload, args.source)
    if args.verbose:
        print(f"sent fwknop SPA to {address}:{port}/udp: {allow},{access}")
    return 0


def _host_of(args: argparse.Namespace) -> str:
    """HOST, or the host of the client config's server of that name."""
    path = args.client_config
    if path or os.path.exists(os.path.expanduser(clientconfig.DEFAULT)):
        server = clientconfig.load(path).get(args.host)
        if server is not None:
            return server.host
    return str(args.host)


def _knock_ports(args: argparse.Namespace, ports: list[Port], host: str | None = None) -> int:
    """Knock on ``ports`` in order; with --print-packet, only print them (a one-time
    sequence printed is not spent: nothing reaches the server)."""
    from sesame import client

    if args.print_packet:
        print(" ".join(str(p) for p in ports))
        return 0
    fam, address = client.resolve(host or _host_of(args), _family(args))
    client.knock(fam, address, ports, args.delay)
    if args.verbose:
        print(f"knocked {address}: {' '.join(str(p) for p in ports)}")
    return 0


def _public_address(server: clientconfig.Server, family: int) -> str | None:
    """The address the server sees this client as, if the client config says: literal,
    or asked of a STUN server."""
    from sesame import client

    spec = server.public_address
    if spec is None or not spec.startswith("stun:"):
        return spec
    return client.stun_address(spec, family)


def _knock(args: argparse.Namespace) -> int:
    from sesame import client

    if args.fwknop:
        return _knock_fwknop(args)
    if args.door is None:
        if not args.ports:
            raise ValueError("give the ports to knock on, or --door DOOR for SPA")
        ports = [parse_port(p, "udp" if args.udp else "tcp") for p in args.ports]
        return _knock_ports(args, ports)
    if args.ports:
        raise ValueError("give either ports or --door, not both")
    server = _keyed_server(args)
    one_time = server.doors.get(args.door)
    if one_time is not None:
        ports = list(
            client.one_time_sequence(
                server.key, args.door, one_time.port_range, one_time.sequence_length
            )
        )
        return _knock_ports(args, ports, server.host)
    fam, address = client.resolve(server.host, _family(args))
    port = args.spa_port or server.spa_port
    mine = args.allow_ip or _public_address(server, fam)
    if mine is None:
        mine = client.local_address(fam, address, port, args.source)
        if client.is_private(ip_address(mine)):
            print(
                f"sesame: warning: this host's address {mine} is private: behind NAT the"
                " server sees another and will refuse the datagram; set public_address"
                f' (an address, or "stun:HOST" to ask a STUN server) for [[server]]'
                f" {server.name!r} in the client config, or give --allow-ip",
                file=sys.stderr,
            )
    payload = client.spa_packet(server.user, server.key, args.door, ip_address(mine))
    if args.print_packet:
        print(payload.hex())
        return 0
    client.send_spa(fam, address, port, payload, args.source)
    if args.verbose:
        print(
            f"sent SPA to {address}:{port}/udp: user {server.user}, door {args.door}, "
            f"open for {mine}"
        )
    return 0


def _sequence(args: argparse.Namespace) -> int:
    from sesame import client

    server = _keyed_server(args)
    one_time = server.doors.get(args.door)
    if one_time is None:
        raise ValueError(
            f"door {args.door!r} of {server.name!r} has no [server.doors.{args.door}] "
            "port_range in the client config"
        )
    ports = client.one_time_sequence(
        server.key, args.door, one_time.port_range, one_time.sequence_length
    )
    print(" ".join(str(p) for p in ports))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    if not NAME_RE.match(args.name):
        raise ValueError("NAME must be 1-32 letters, digits, '_', '.' or '-'")
    key = encode_key(new_key())
    doors = ", ".join(f'"{d}"' for d in args.door)
    print(f"""\
# Server: add to the server's sesame.toml, which then holds a key: keep it private
# (chmod 640 /etc/sesame/sesame.toml: root and its group only; sesame refuses it else)
[[user]]
name = "{args.name}"
key = "{key}"
doors = [{doors}]

# Client: add to ~/.config/sesame/client.toml (chmod 600)
[[server]]
name = "{args.server}"
host = "{args.host}"
user = "{args.name}"
key = "{key}"
spa_port = {args.spa_port}""")
    return 0


def _need_admin(command: str) -> None:
    """Refuse, saying why, a command that reads or changes the kernel's tables without
    the right to (it would see no table, no grant, and say so wrongly)."""
    if not host.can_admin_network():
        raise SesameError(f"{command} {host.NEEDS_ADMIN}, to read sesame's table")


def _revoke(args: argparse.Namespace) -> int:
    from sesame.engine.events import Element, Grant
    from sesame.firewall import NftGate
    from sesame.firewall.ruleset import Entry, Holder

    config = configuration.load(args.config)
    _need_admin("revoke")
    gate = NftGate(config.server.table)
    try:
        who: object = ip_address(args.who)
    except ValueError:
        who = args.who
    gone: list[tuple[Entry, Holder]] = []
    kept: list[Element] = []
    for entry in gate.entries():
        held = entry.held()
        left = [h for h in held if who not in (entry.address, h.user)]
        gone += [(entry, h) for h in held if h not in left]
        if left and len(left) < len(held):  # the others hold it until their own deadline
            holders = tuple(
                Grant(h.door, entry.address, (entry.port,), entry.left - h.before, h.user)
                for h in left
            )
            kept.append(Element(entry.address, entry.port, holders[0].expires, holders))
    still_held = {(k.address, k.port) for k in kept}
    gate.remove({e for e, _ in gone if (e.address, e.port) not in still_held})
    gate.apply(kept, 0.0)
    for entry, holder in gone:
        print(
            f"revoked {entry.address} {entry.port} (door {holder.door}"
            + (f", user {holder.user})" if holder.user else ")")
        )
    if not gone:
        print(f"no live grant for {args.who}", file=sys.stderr)
        return 1
    _tell_daemon(config.server.pid_file)
    return 0


def _tell_daemon(pid_file: str | None) -> None:
    """Have a running daemon (found by its pid_file) read the grants back, so it closes
    what was revoked: logs it, runs stop commands, and opens anew on the next knock."""
    if not pid_file:
        return
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, signal.SIGUSR2)
    except (OSError, ValueError):
        print(f"no running sesame found by {pid_file}", file=sys.stderr)
        return
    print(f"told sesame (pid {pid})")


def _status(args: argparse.Namespace) -> int:
    from sesame.firewall import NftGate

    config = configuration.load(args.config)
    _need_admin("status")
    gate = NftGate(config.server.table)
    if not gate.exists():
        print(
            f"table inet {config.server.table} is not installed (sesame is not serving)",
            file=sys.stderr,
        )
        return 1
    missing = host.missing_interface(config.server.interface)
    if missing:
        print(f"warning: {missing}: knocks and SPA are ignored", file=sys.stderr)
    holds = sorted(  # a holder whose own time is up (no daemon ran to say so) is gone
        ((e, h, e.left - h.before) for e in gate.entries() for h in e.held() if e.left > h.before),
        key=lambda x: (x[1].door, str(x[0].address), x[0].port),
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "address": str(e.address),
                        "proto": e.port.proto,
                        "port": e.port.number,
                        "door": h.door,
                        "user": h.user,
                        "seconds_left": left,
                    }
                    for e, h, left in holds
                ],
                indent=2,
            )
        )
        return 0
    if not holds:
        print("no live grants")
        return 0
    rows = [("ADDRESS", "PORT", "DOOR", "USER", "LEFT")] + [
        (str(e.address), str(e.port), h.door, h.user or "-", f"{left:.0f}s") for e, h, left in holds
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _import(args: argparse.Namespace) -> int:
    if args.kind == "knockd":
        from sesame.compat import knockd

        print(knockd.to_toml(args.file), end="")
        missing = host.missing_interface(knockd.load(args.file).server.interface)
        if missing:
            print(f"sesame: note: {missing}; change interface before serving", file=sys.stderr)
    else:
        from sesame.compat import fwknop

        print(fwknop.to_toml(args.file), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    config = _loader(args)()
    missing = host.missing_interface(config.server.interface)
    if missing and not args.other_host:
        raise ConfigError(
            config.path,
            _line_of(config.path, "interface"),
            f"{missing}: knocks and SPA would be ignored; --other-host checks a config"
            " written for another host",
        )
    names = [d.name for d in config.doors] + [s.name for s in config.fwknop]
    print(f"{config.path}: ok, {plural(len(names), 'door')}: " + ", ".join(names))
    return 0


def _line_of(path: str, key: str) -> int:
    """The line where ``key = ...`` is set in a config file (sesame's TOML or a
    knockd.conf), or 1 (the key was left to its default)."""
    pattern = re.compile(rf"^\s*{key}\s*=", re.IGNORECASE)
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if pattern.match(line):
                return number
    return 1


def _lab(args: argparse.Namespace) -> int:
    from sesame.lab import run

    return run(open_for=args.open_for)


def _keyed_options(p: argparse.ArgumentParser, door_required: bool = False) -> None:
    p.add_argument(
        "--door",
        required=door_required,
        metavar="DOOR",
        help="the door to open by key (SPA, or a one-time sequence)",
    )
    p.add_argument(
        "--client-config",
        metavar="FILE",
        help=f"client config (default {clientconfig.DEFAULT}; must be mode 600)",
    )
    p.add_argument("--user", metavar="NAME", help="user name, when HOST is not in the config")
    p.add_argument("--key-file", metavar="FILE", help="file holding the user's base64 key")
    p.add_argument("--spa-port", type=int, metavar="PORT", help=f"SPA port (default {FWKNOP_PORT})")


def _source_options(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", metavar="FILE", help="sesame's config file (TOML)")
    source.add_argument("--knockd-conf", metavar="FILE", help="a knockd 0.8 knockd.conf")
    source.add_argument(
        "--fwknop-access", metavar="FILE", help="an fwknopd access.conf (fwknop clients' SPA)"
    )


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config file (TOML)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="sesame", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"sesame {__version__}")
    top.add_argument(
        "-v", "--verbose", action="store_true", help="log every knock and every dropped packet"
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground, logging to stderr. "
        "SIGTERM/SIGINT stop it (the table stays: ports stay closed, grants "
        "expire in the kernel); SIGHUP reloads the config, keeping live grants; "
        "a bad new config is refused and the old one keeps running; SIGUSR1 logs the "
        "counters. Needs root.",
    )
    _source_options(p)
    p.add_argument(
        "-i",
        "--interface",
        metavar="IFACE",
        help="with --knockd-conf: the interface (as knockd's -i)",
    )
    p.add_argument(
        "--fwknop-port",
        type=int,
        default=FWKNOP_PORT,
        metavar="PORT",
        help=f"with --fwknop-access: the SPA port (default {FWKNOP_PORT})",
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where replay windows are kept (default /var/lib/sesame)"
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every knock and every dropped packet",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "import",
        help="print a knockd.conf or an access.conf as sesame's TOML",
        description="Print the sesame config equivalent to a knockd.conf or an fwknopd "
        "access.conf, commented where sesame has a better form.",
    )
    p.add_argument("kind", choices=["knockd", "fwknop"], help="the file's kind")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_import)

    p = sub.add_parser(
        "knock",
        help="knock: a plain sequence, an SPA datagram, or a one-time sequence",
        description="Knock on HOST. With PORTs: a plain sequence, one TCP SYN or one UDP "
        "datagram per port, in order (PORT, PORT/tcp, PORT/udp or knockd's PORT:udp; tcp "
        "unless -u). With --door: HOST is a server of the client config (or a host, with "
        "--user and --key-file) and sesame sends ONE authenticated UDP datagram (SPA) asking "
        "to open DOOR for this host's address, or, for a door with one-time sequences in "
        "the client config, this step's sequence.",
        epilog="examples:\n  sesame knock 203.0.113.5 7000 8000 9000/udp\n"
        "  sesame knock home --door ssh\n"
        "  sesame knock 203.0.113.5 --door ssh --user alice --key-file ~/.sesame.key\n"
        "  sesame knock --fwknop --fwknop-rc ~/.fwknoprc myserver",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("host", metavar="HOST", help="a server name, a host name, IPv4 or IPv6")
    p.add_argument("ports", metavar="PORT", nargs="*", help="PORT[/tcp|/udp] or PORT[:udp]")
    p.add_argument(
        "-d",
        "--delay",
        type=int,
        default=0,
        metavar="MS",
        help="wait MS milliseconds between knocks",
    )
    p.add_argument("-u", "--udp", action="store_true", help="knock with UDP unless a port says")
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4 only")
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6 only")
    _keyed_options(p)
    p.add_argument(
        "--allow-ip",
        metavar="ADDR",
        help="ask to open for ADDR instead of this host's address (NAT; the "
        "server must allow it for the user)",
    )
    p.add_argument(
        "--source", metavar="ADDR", help="send from this local address (and ask to open for it)"
    )
    p.add_argument(
        "--print-packet",
        action="store_true",
        help="print what would be sent instead of sending anything: the SPA datagram"
        " (hex; fwknop's as text), or the ports of a knock sequence (a one-time sequence"
        " printed is not spent)",
    )
    fw = p.add_argument_group(
        "fwknop",
        "Send fwknop's SPA format, to a server running fwknopd (or sesame serving"
        " an access.conf): HOST is a stanza of ~/.fwknoprc, or a host with the keys as flags",
    )
    fw.add_argument("--fwknop", action="store_true", help="send an fwknop SPA datagram")
    fw.add_argument("--fwknop-rc", metavar="FILE", help="the rc file (default ~/.fwknoprc)")
    fw.add_argument(
        "-A",
        "--access",
        metavar="PROTO/PORT",
        help="what to open, e.g. tcp/22 or tcp/22,udp/53 (else the stanza's ACCESS)",
    )
    fw.add_argument(
        "-s",
        "--source-any",
        action="store_true",
        help="ask the server to use the datagram's source (0.0.0.0)",
    )
    fw.add_argument(
        "-f",
        "--fw-timeout",
        type=int,
        metavar="SECONDS",
        help="ask for this timeout (capped by the server)",
    )
    fw.add_argument("--fwknop-key-base64", metavar="KEY", help="Rijndael key, base64")
    fw.add_argument("--fwknop-hmac-key-base64", metavar="KEY", help="HMAC key, base64")
    fw.add_argument(
        "--hmac-digest-type",
        metavar="TYPE",
        choices=["md5", "sha1", "sha256", "sha384", "sha512"],
        help="HMAC digest (default sha256)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="say what was sent"
    )
    p.set_defaults(func=_knock)

    p = sub.add_parser(
        "sequence",
        help="print this step's one-time sequence for a door",
        description="Print the one-time knock sequence of DOOR for the current 30-second "
        "step, as PORT/PROTO items, for typing into another knock app. The door needs "
        "[server.doors.DOOR] port_range in the client config.",
    )
    p.add_argument("host", metavar="SERVER", help="a server name from the client config")
    _keyed_options(p, door_required=True)
    p.set_defaults(func=_sequence, ipv4=False, ipv6=False)

    p = sub.add_parser(
        "keygen",
        help="make a key for a user: the server's and the client's stanzas",
        description="Print a fresh random 32-byte key for user NAME as two stanzas: the "
        "server's [[user]] and the client's [[server]]. Keep both files private.",
    )
    p.add_argument("name", metavar="NAME", help="the user's name")
    p.add_argument(
        "--door",
        action="append",
        default=[],
        metavar="DOOR",
        help="a door the user may open (repeat for more)",
    )
    p.add_argument(
        "--server",
        default="home",
        metavar="NAME",
        help="the server's name in the client config (default home)",
    )
    p.add_argument(
        "--host",
        default="SERVER-ADDRESS",
        metavar="HOST",
        help="the server's address for the client config",
    )
    p.add_argument(
        "--spa-port",
        type=int,
        default=FWKNOP_PORT,
        metavar="PORT",
        help=f"the server's SPA port (default {FWKNOP_PORT})",
    )
    p.set_defaults(func=_keygen)

    p = sub.add_parser(
        "revoke",
        help="remove a user's or an address's grants now",
        description="Remove at once every live grant of USER, or of ADDRESS, from the "
        "kernel, and tell the running daemon (found by the config's pid_file) to close "
        "them too: it logs them as revoked and runs the doors' stop commands. A user's "
        "next valid knock opens again.",
    )
    _config_option(p)
    p.add_argument("who", metavar="USER|ADDRESS")
    p.set_defaults(func=_revoke)

    p = sub.add_parser(
        "status",
        help="show the live grants, read from the kernel",
        description="Show the live grants as the kernel holds them: address, "
        "port, door, user and seconds left.",
    )
    _config_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "check",
        help="validate a config file",
        description="Validate a config file (sesame's, a knockd.conf or an fwknopd "
        "access.conf): exit 0, or print FILE:LINE: reason and exit 2. Touches nothing.",
    )
    _source_options(p)
    p.add_argument(
        "--other-host",
        action="store_true",
        help="accept an interface this host does not have (a config written for another)",
    )
    p.set_defaults(func=_check, interface=None, fwknop_port=FWKNOP_PORT, state_dir=None)

    p = sub.add_parser(
        "lab",
        help="the demo: a server, a user and a stranger in network namespaces (root)",
        description="Build a server and two clients (a user and a stranger) in "
        "network namespaces, run sesame, and show each step: blocked, knock, "
        "open to the user only, an established connection outliving the window, "
        "expiry, un-knock. Removes everything it made, also on Ctrl-C.",
    )
    p.add_argument(
        "--open-for",
        type=int,
        default=4,
        metavar="SECONDS",
        help="the grant window in the demo (default 4)",
    )
    p.set_defaults(func=_lab)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(Escaping(FORMAT))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[stderr])
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (SesameError, ValueError, OSError) as exc:
        print(f"sesame: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
