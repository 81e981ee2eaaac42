"""``sesame knock`` and ``sesame sequence``: the client side."""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import sys
import time
from ipaddress import ip_address

from sesame import clientconfig
from sesame.basics import FWKNOP_PORT, Port, parse_port
from sesame.cli import common
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
    common.keyed_options(p)
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
    _fwknop_options(p)
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


def _fwknop_options(p: argparse.ArgumentParser) -> None:
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


def knock(args: argparse.Namespace) -> int:
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
    fam, address = client.resolve(stanza.server, common.family(args))
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
