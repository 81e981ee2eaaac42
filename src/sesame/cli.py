"""The ``sesame`` command."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys

from sesame import __version__
from sesame import config as configuration
from sesame.errors import ConfigError, SesameError
from sesame.ports import parse_port

DESCRIPTION = """\
sesame: port knocking for Linux. The host shows no open ports; a client who sends
the right knock gets the guarded port opened to its own address, for a while, in
sesame's own nftables table. Grants expire in the kernel, even if sesame dies."""


def _serve(args: argparse.Namespace) -> int:
    from sesame.daemon import serve
    from sesame.firewall import NftGate
    from sesame.sensor import NflogSensor

    config = configuration.load(args.config)
    sensor = NflogSensor(config.server.log_group)
    try:
        gate = NftGate(config.server.table)
    except SesameError:
        sensor.close()
        raise
    return serve(args.config, gate, sensor)


def _knock(args: argparse.Namespace) -> int:
    from sesame.client import knock, resolve

    ports = [parse_port(p, "udp" if args.udp else "tcp") for p in args.ports]
    family = socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else socket.AF_UNSPEC
    fam, address = resolve(args.host, family)
    knock(fam, address, ports, args.delay)
    if args.verbose:
        print(f"knocked {address}: {' '.join(str(p) for p in ports)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from sesame.firewall import NftGate

    config = configuration.load(args.config)
    gate = NftGate(config.server.table)
    if not gate.exists():
        print(
            f"table inet {config.server.table} is not installed (sesame is not serving)",
            file=sys.stderr,
        )
        return 1
    entries = sorted(gate.entries(), key=lambda e: (e.door, str(e.address), e.port))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "address": str(e.address),
                        "proto": e.port.proto,
                        "port": e.port.number,
                        "door": e.door,
                        "seconds_left": e.left,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return 0
    if not entries:
        print("no live grants")
        return 0
    rows = [("ADDRESS", "PORT", "DOOR", "LEFT")] + [
        (str(e.address), str(e.port), e.door, f"{e.left:.0f}s") for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _check(args: argparse.Namespace) -> int:
    config = configuration.load(args.config)
    print(
        f"{args.config}: ok, {len(config.doors)} door(s): "
        + ", ".join(d.name for d in config.doors)
    )
    return 0


def _lab(args: argparse.Namespace) -> int:
    from sesame.lab import run

    return run(open_for=args.open_for)


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
        "a bad new config is refused and the old one keeps running. Needs root.",
    )
    _config_option(p)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every knock and every dropped packet",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "knock",
        help="send a plain knock sequence",
        description="Send a knock sequence to HOST: one TCP SYN or one UDP "
        "datagram per port, in order. Ports are PORT, PORT/tcp, PORT/udp or "
        "knockd's PORT:udp (tcp unless -u).",
        epilog="example: sesame knock 203.0.113.5 7000 8000 9000/udp",
    )
    p.add_argument("host", metavar="HOST", help="name, IPv4 or IPv6 address")
    p.add_argument("ports", metavar="PORT", nargs="+", help="PORT[/tcp|/udp] or PORT[:udp]")
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
    p.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="say what was sent"
    )
    p.set_defaults(func=_knock)

    p = sub.add_parser(
        "status",
        help="show the live grants, read from the kernel",
        description="Show the live grants as the kernel holds them: address, "
        "port, door and seconds left.",
    )
    _config_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "check",
        help="validate a config file",
        description="Validate a config file: exit 0, or print FILE:LINE: reason "
        "and exit 2. Touches nothing.",
    )
    _config_option(p)
    p.set_defaults(func=_check)

    p = sub.add_parser(
        "lab",
        help="the two-host demo in network namespaces (root)",
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s sesame[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
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
