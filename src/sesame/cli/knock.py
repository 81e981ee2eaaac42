"""``sesame knock`` and ``sesame sequence``: the client side."""

from __future__ import annotations

import argparse
import sys

from sesame.cli import common, fwknop, plans


def add(sub: common.Subparsers) -> None:
    p = sub.add_parser(
        "knock",
        help="knock: a plain sequence, an SPA datagram, or a one-time sequence",
        description="Knock on HOST. With PORTs: a plain sequence, one TCP SYN or one UDP "
        "datagram per port, in order (PORT, PORT/tcp, PORT/udp or knockd's PORT:udp; tcp "
        "unless -u). With --door (or the server's door in the client config): HOST is a "
        "server of the client config (or a host, with --user and --key-file) and sesame "
        "sends ONE authenticated UDP datagram (SPA) asking to open DOOR for this host's "
        "address; for a door with one-time sequences in the client config, this step's "
        "sequence; for a door with a plain sequence there, that sequence. Every client "
        "command runs as an ordinary user.",
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

    if args.host is None and not args.fwknop:
        raise ValueError("give HOST")
    if args.door is None and not args.ports and not args.fwknop:
        server = plans.servers(args).get(args.host)
        if server is None or server.door is None:
            raise ValueError("give the ports to knock on, or --door DOOR for SPA")
    how = plans.plan(args)
    family = how.family or common.family(args)
    failed: list[str] = []
    sent = 0
    for host in how.hosts:  # every address of every host: either twin lets the user in
        for fam, address in client.addresses(host, family):
            try:
                shown, said = how.knock(fam, address, not args.print_packet)
            except OSError as exc:  # that address cannot be reached from here
                failed.append(f"{address}: {exc.strerror or exc}")
                continue
            sent += 1
            if args.print_packet:
                print(shown)
            elif args.verbose:
                print(said)
    for why in failed:
        print(f"sesame: knock: {why}", file=sys.stderr)
    return 0 if sent else 1


def sequence(args: argparse.Namespace) -> int:
    from sesame import client

    server = plans.keyed_server(args)
    one_time = server.doors.get(args.door)
    if one_time is None or one_time.port_range is None:
        raise ValueError(
            f"door {args.door!r} of {server.name!r} has no [server.doors.{args.door}] "
            "port_range in the client config"
        )
    ports = client.one_time_sequence(
        server.key, args.door, one_time.port_range, one_time.sequence_length
    )
    print(" ".join(str(p) for p in ports))
    return 0
