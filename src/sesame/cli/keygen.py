"""``sesame keygen``: a user's key, as the server's and the client's stanzas."""

from __future__ import annotations

import argparse

from sesame.basics import FWKNOP_PORT
from sesame.cli import common
from sesame.crypto import encode_key, new_key
from sesame.doors import NAME_RE


def add(sub: common.Subparsers) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
