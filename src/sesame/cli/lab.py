"""``sesame lab``: the two-host demo in network namespaces."""

from __future__ import annotations

import argparse

from sesame.cli import common


def add(sub: common.Subparsers) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sesame.lab import run

    return run(open_for=args.open_for)
