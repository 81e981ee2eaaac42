"""``sesame connect`` (knock, then connect: ssh's ProxyCommand) and ``sesame
ssh-config`` (the Host block that uses it)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys

from sesame.cli import common, fwknop, plans


def add(sub: common.Subparsers) -> None:
    p = sub.add_parser(
        "connect",
        help="knock, then connect and relay (ssh's ProxyCommand)",
        description="Knock on SERVER, then connect to PORT and relay standard input and "
        "output over the connection, or, with --fdpass, hand the connected socket to ssh "
        "(ProxyUseFdpass yes) and exit. Every address of SERVER is knocked on and tried, "
        "IPv6 first, just before its first connection attempt; attempts repeat with a "
        "short back-off until one opens or --timeout passes. Knock with --door DOOR (SPA "
        "or a one-time sequence; SERVER is a server of the client config, or the door's "
        "default), --sequence (a plain sequence, for sesame or knockd: PORT/PROTO,... or "
        "a door of the client config with a sequence) or --fwknop (SERVER is a "
        "~/.fwknoprc stanza). Messages go to standard error only; the exit status is 0 "
        "once connected, 1 if nothing opened in time, 2 for a bad config.",
        epilog="examples:\n  sesame connect home 22\n"
        "  sesame connect --sequence 7000/tcp,8000/tcp,9000/udp 203.0.113.5 22\n"
        "  sesame connect --fwknop office 22\n"
        "  ssh -o ProxyCommand='sesame connect --fdpass home %p' -o ProxyUseFdpass=yes home",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("host", metavar="SERVER", help="a server of the client config, or a host")
    p.add_argument(
        "port",
        metavar="PORT",
        type=int,
        nargs="?",
        help="the TCP port to connect to (default: the first the door opens, in the config)",
    )
    p.add_argument("--fdpass", action="store_true", help="pass the socket to ssh over stdout")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up when nothing opened after this long (default 10)",
    )
    p.add_argument(
        "--sequence",
        metavar="PORTS|DOOR",
        help="knock a plain sequence: PORT/PROTO,PORT/PROTO,... or a door of the config",
    )
    p.add_argument("-d", "--delay", type=int, default=0, metavar="MS", help="between knocks")
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4 only")
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6 only")
    p.add_argument(
        "--source",
        metavar="ADDR",
        help="send and connect from this local address (a low SPA_SOURCE_PORT needs root)",
    )
    common.keyed_options(p)
    fwknop.options(p)
    common.verbose(p, "say what was sent and where it connected (on stderr)")
    p.set_defaults(func=connect, allow_ip=None, print_packet=False)

    p = sub.add_parser(
        "ssh-config",
        help="print the ~/.ssh/config Host block that knocks with sesame connect",
        description="Print a Host block for ~/.ssh/config: ssh then knocks on SERVER with "
        "'sesame connect --fdpass' and uses the socket it hands over.",
    )
    p.add_argument("host", metavar="SERVER", help="a server of the client config")
    p.add_argument("--door", metavar="DOOR", help="the door (default: the server's door)")
    p.add_argument("--client-config", metavar="FILE", help="the client config")
    p.set_defaults(func=ssh_config)


def connect(args: argparse.Namespace) -> int:
    from sesame import connect as connecting

    how = plans.plan(args)
    port = args.port or how.port
    if port is None:
        raise ValueError('give PORT (or open = ["PORT/tcp"] for the door in the client config)')

    def knock(family: int, address: str) -> None:
        _, said = how.knock(family, address, True)
        if args.verbose:
            print(f"sesame: {said}", file=sys.stderr)

    family = how.family or common.family(args)
    try:
        targets = [a for host in how.hosts for a in connecting.addresses(host, family)]
        conn = connecting.connect(targets, port, knock, args.timeout, args.source)
    except connecting.NoConnection as exc:
        print(f"sesame: connect: {how.host}: {exc}", file=sys.stderr)
        return 1
    with conn:
        if args.verbose:
            print(f"sesame: connected to {conn.getpeername()[0]} port {port}", file=sys.stderr)
        if args.fdpass:
            connecting.hand_over(conn)
        else:
            connecting.relay(conn)
    return 0


def ssh_config(args: argparse.Namespace) -> int:
    server = plans.servers(args).get(args.host)
    if server is None:
        raise ValueError(f"{args.host!r} is not a server of the client config")
    door = args.door or server.door
    if door is None:
        raise ValueError(f"give --door: server {server.name!r} names no door")
    port = server.doors[door].port if door in server.doors else None
    command = [shutil.which("sesame") or "sesame", "connect", "--fdpass"]
    if args.client_config:
        command += ["--client-config", args.client_config]
    if door != server.door:
        command += ["--door", door]
    command += [server.name, "%p"]
    lines = [f"Host {server.name}", f"    HostName {server.host}"]
    lines += [f"    Port {port}"] if port not in (None, 22) else []
    lines += [f"    ProxyCommand {shlex.join(command)}", "    ProxyUseFdpass yes"]
    print("\n".join(lines))
    return 0
