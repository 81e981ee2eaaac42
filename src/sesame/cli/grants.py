"""``sesame status`` and ``sesame revoke``: the live grants, read from the kernel."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from ipaddress import ip_address

from sesame import config as configuration
from sesame import host
from sesame.cli import common


def add(sub: common.Subparsers) -> None:
    p = sub.add_parser(
        "status",
        help="show the live grants, read from the kernel",
        description="Show the live grants as the kernel holds them: address, "
        "port, door, user and seconds left.",
    )
    common.config_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=status)

    p = sub.add_parser(
        "revoke",
        help="remove a user's or an address's grants now",
        description="Remove at once every live grant of USER, or of ADDRESS, from the "
        "kernel, and tell the running daemon (found by the config's pid_file) to close "
        "them too: it logs them as revoked and runs the doors' stop commands. A user's "
        "next valid knock opens again.",
    )
    common.config_option(p)
    p.add_argument("who", metavar="USER|ADDRESS")
    p.set_defaults(func=revoke)


def status(args: argparse.Namespace) -> int:
    from sesame.firewall import NftGate

    config = configuration.load(args.config)
    common.need_admin("status")
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


def revoke(args: argparse.Namespace) -> int:
    from sesame.engine.events import Element, Grant
    from sesame.firewall import NftGate
    from sesame.firewall.ruleset import Entry, Holder

    config = configuration.load(args.config)
    common.need_admin("revoke")
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
