"""How to knock, decided once for ``sesame knock`` and ``sesame connect``: which host,
and what to send to one of its addresses (a plain sequence, a one-time sequence, a
sesame SPA datagram, or fwknop's)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address

from sesame import clientconfig
from sesame.basics import FWKNOP_PORT, Port, parse_port
from sesame.crypto import decode_key, read_private

# (family, address, send) -> (what --print-packet prints, what -v says); sends if asked
Knock = Callable[[int, str, bool], tuple[str, str]]


@dataclass(frozen=True)
class Plan:
    host: str  # the name or address to resolve
    knock: Knock
    port: int | None = None  # where `sesame connect` goes unless told (the door's open)
    family: int = socket.AF_UNSPEC  # a family the plan insists on (fwknop's -4 setting)
    also: tuple[str, ...] = ()  # the server's other hosts (twins): knocked too

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, *self.also)


def plan(args: argparse.Namespace) -> Plan:
    """The plan the command line asks for."""
    if args.fwknop:
        from sesame.cli import fwknop

        return fwknop.plan(args)
    if getattr(args, "ports", None):
        if args.door is not None:
            raise ValueError("give either ports or --door, not both")
        ports = [parse_port(p, "udp" if args.udp else "tcp") for p in args.ports]
        server = servers(args).get(args.host)
        hosts = (server.host, *server.also) if server is not None else (str(args.host),)
        return Plan(hosts[0], _sequence(ports, args.delay), also=hosts[1:])
    if getattr(args, "sequence", None):
        return _named_sequence(args)
    return _door(args)


def servers(args: argparse.Namespace) -> dict[str, clientconfig.Server]:
    """The client config's servers (none if there is no config)."""
    path = args.client_config
    if path or os.path.exists(os.path.expanduser(clientconfig.DEFAULT)):
        return clientconfig.load(path)
    return {}


def keyed_server(args: argparse.Namespace) -> clientconfig.Server:
    """The server to knock on by key: a name in the client config, or flags."""
    known = servers(args)
    if args.host in known and not args.user:
        return known[args.host]
    if not (args.user and args.key_file):
        where = args.client_config or clientconfig.DEFAULT
        raise ValueError(f"{args.host!r} is not a server in {where}; give --user and --key-file")
    key = decode_key(read_private(os.path.expanduser(args.key_file)).decode("ascii", "replace"))
    return clientconfig.Server(args.host, args.host, args.user, key, args.spa_port or FWKNOP_PORT)


def _sequence(ports: list[Port] | tuple[Port, ...], delay: int = 0) -> Knock:
    from sesame import client

    def knock(family: int, address: str, send: bool) -> tuple[str, str]:
        shown = " ".join(str(p) for p in ports)
        if send:  # a one-time sequence printed is not spent: nothing reaches the server
            client.knock(family, address, ports, delay)
        return shown, f"knocked {address}: {shown}"

    return knock


def _named_sequence(args: argparse.Namespace) -> Plan:
    """``--sequence``: a door of the client config with a plain sequence, or the ports."""
    server = servers(args).get(args.host)
    door = server.doors.get(args.sequence) if server is not None else None
    if server is not None and door is not None and door.sequence:
        return Plan(server.host, _sequence(door.sequence, args.delay), door.port, also=server.also)
    ports = [parse_port(p.strip()) for p in args.sequence.split(",") if p.strip()]
    if server is None:
        return Plan(args.host, _sequence(ports, args.delay))
    return Plan(server.host, _sequence(ports, args.delay), also=server.also)


def _door(args: argparse.Namespace) -> Plan:
    """A door of a server: its plain or one-time sequence, or an SPA datagram."""
    from sesame import client

    server = keyed_server(args)
    name = args.door or server.door
    if name is None:
        raise ValueError("give --door DOOR (or the server's door in the client config)")
    door = server.doors.get(name, clientconfig.ClientDoor())
    if door.sequence:
        knock = _sequence(door.sequence, args.delay)
    elif door.port_range is not None:
        ports = client.one_time_sequence(server.key, name, door.port_range, door.sequence_length)
        knock = _sequence(ports, args.delay)
    elif not server.key:
        raise ValueError(f"server {server.name!r} has no key: its doors are plain sequences")
    else:
        knock = _spa(args, server, name)  # a fresh datagram for each address
    return Plan(server.host, knock, door.port, also=server.also)


def _spa(args: argparse.Namespace, server: clientconfig.Server, door: str) -> Knock:
    from sesame import client

    def knock(family: int, address: str, send: bool) -> tuple[str, str]:
        port = args.spa_port or server.spa_port
        mine = args.allow_ip or _public_address(server, family)
        if mine is None:
            mine = client.local_address(family, address, port, args.source)
            if client.is_private(ip_address(mine)):
                print(
                    f"sesame: warning: this host's address {mine} is private: behind NAT"
                    " the server sees another and will refuse the datagram; set"
                    ' public_address (an address, or "stun:HOST" to ask a STUN server)'
                    f" for [[server]] {server.name!r} in the client config, or give"
                    " --allow-ip",
                    file=sys.stderr,
                )
        payload = client.spa_packet(server.user, server.key, door, ip_address(mine))
        if send:
            client.send_spa(family, address, port, payload, args.source)
        said = f"sent SPA to {address}:{port}/udp: user {server.user}, door {door}, open for {mine}"
        return payload.hex(), said

    return knock


def _public_address(server: clientconfig.Server, family: int) -> str | None:
    """The address the server sees this client as, if the client config says: literal
    (when of ``family``), or asked of a STUN server."""
    from sesame import client

    spec = server.public_address
    if spec is None:
        return None
    if spec.startswith("stun:"):
        return client.stun_address(spec, family)
    return spec if ip_address(spec).version == (6 if family == socket.AF_INET6 else 4) else None
