"""``sesame keygen``: a user's key, as the server's and the client's stanzas."""

from __future__ import annotations

import argparse
import os
import stat
import sys

from sesame.basics import FWKNOP_PORT
from sesame.cli import common
from sesame.crypto import encode_key, new_key
from sesame.doors import NAME_RE


def add(sub: common.Subparsers) -> None:
    p = sub.add_parser(
        "keygen",
        help="make a key for a user (the server's and the client's stanzas), or a cluster",
        description="Print a fresh random 32-byte key for user NAME as two stanzas: the "
        "server's [[user]] and the client's [[server]]. Keep both files private. With"
        " --cluster, print a cluster key instead, the one line of [cluster]'s key_file"
        " (the same file on every node): sesame keygen --cluster > /etc/sesame/cluster.key"
        " (a file it is written to is made mode 0600).",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="the user's name")
    p.add_argument("--cluster", action="store_true", help="a cluster key, for key_file")
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
    if args.cluster:
        if args.name is not None:
            raise ValueError("--cluster makes a cluster's key: give no NAME")
        if stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
            os.fchmod(sys.stdout.fileno(), 0o600)  # a file made by the shell: private
        print(encode_key(new_key()))
        return 0
    if args.name is None or not NAME_RE.match(args.name):
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
