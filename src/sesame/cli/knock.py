"""``sesame knock`` and ``sesame sequence``: the client side."""

from __future__ import annotations

import argparse
import os
import sys
from ipaddress import ip_address

from sesame import clientconfig
from sesame.basics import FWKNOP_PORT, Port, parse_port
from sesame.cli import common, fwknop
from sesame.crypto import decode_key, read_private


def add(sub: common.Subparsers) -> None:
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
        "  sesame knock --fwknop --fwknop-rc ~/.fwknoprc myserver\n"
        "  sesame knock --fwknop -n myserver -D 198.51.100.7 -A tcp/22",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "host", metavar="HOST", nargs="?", help="a server name, a host name, IPv4 or IPv6"
    )
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
    common.keyed_options(p)
    p.add_argument(
        "-a",
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
    fwknop.options(p)
    common.verbose(p, "say what was sent")
    p.set_defaults(func=knock)

    p = sub.add_parser(
        "sequence",
        help="print this step's one-time sequence for a door",
        description="Print the one-time knock sequence of DOOR for the current 30-second "
        "step, as PORT/PROTO items, for typing into another knock app. The door needs "
        "[server.doors.DOOR] port_range in the client config.",
    )
    p.add_argument("host", metavar="SERVER", help="a server name from the client config")
    common.keyed_options(p, door_required=True)
    p.set_defaults(func=sequence, ipv4=False, ipv6=False)


def knock(args: argparse.Namespace) -> int:
    from sesame import client

    if args.fwknop:
        return fwknop.knock(args)
    if args.host is None:
        raise ValueError("give HOST")
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
    fam, address = client.resolve(server.host, common.family(args))
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


def sequence(args: argparse.Namespace) -> int:
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
    fam, address = client.resolve(host or _host_of(args), common.family(args))
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
