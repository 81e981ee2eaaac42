"""``sesame status``, ``revoke``, ``reload`` and ``counters``: the running daemon,
asked on its control socket (status and revoke read the kernel when none answers)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from ipaddress import ip_address
from typing import Any

from sesame import config as configuration
from sesame import host
from sesame.basics import Port
from sesame.cli import common
from sesame.errors import SesameError
from sesame.service.control import grant_row


def add(sub: common.Subparsers) -> None:
    p = sub.add_parser(
        "status",
        help="show the live grants",
        description="Show the live grants: address, port, door, user and seconds left,"
        " as the running daemon holds them (asked on its control socket) or, when no"
        " daemon answers, as the kernel holds them (with -c FILE).",
    )
    common.config_option(p, required=False)
    common.control_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="every node's grants of cluster doors, as each node last told the store"
        " (with -c FILE, whose [cluster] names the store)",
    )
    p.set_defaults(func=status)

    p = sub.add_parser(
        "revoke",
        help="remove a user's or an address's grants now",
        description="Close at once every live grant of USER, or of ADDRESS. The running"
        " daemon (asked on its control socket) closes them: it deletes them from the"
        " kernel, logs them as revoked and runs the doors' stop commands. When no daemon"
        " answers, they are deleted from the kernel (with -c FILE), and a daemon found by"
        " the config's pid_file is told. A user's next valid knock opens again.",
    )
    common.config_option(p, required=False)
    common.control_option(p)
    p.add_argument("who", metavar="USER|ADDRESS")
    p.set_defaults(func=revoke)

    p = sub.add_parser(
        "reload",
        help="have the running daemon read its config again",
        description="Have the running daemon read its config again, as SIGHUP does, and"
        " say whether it took it: a refused config leaves the running one in place and"
        " exits 1 with the reason (so systemctl reload fails visibly).",
    )
    common.control_option(p)
    p.set_defaults(func=reload)

    p = sub.add_parser(
        "counters",
        help="show the running daemon's counters",
        description="Show what the running daemon counted: knocks, grants, SPA accepted,"
        " packets dropped by reason, what the kernel reported.",
    )
    common.control_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=counters)


def _daemon(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    """The daemon's answer; SesameError when none answers."""
    answer = common.ask(args.control, request)
    if answer is None:
        raise SesameError(f"no sesame answers on {args.control}")
    return answer


def reload(args: argparse.Namespace) -> int:
    answer = _daemon(args, {"command": "reload"})
    if not answer.get("ok"):
        print(
            f"sesame: reload refused, the running config stays: {answer.get('error')}",
            file=sys.stderr,
        )
        return 1
    print("reloaded")
    return 0


def counters(args: argparse.Namespace) -> int:
    answer = _daemon(args, {"command": "counters"})
    seen = answer.get("counters", {})
    if args.json:
        print(json.dumps(seen, indent=2, sort_keys=True))
    else:
        for key, value in sorted(seen.items()):
            print(f"{key}: {value}")
    return 0


def status(args: argparse.Namespace) -> int:
    if args.cluster:
        return cluster_status(args)
    answer = common.ask(args.control, {"command": "status"})
    if answer is not None:
        rows = answer.get("grants", [])
    elif not args.config:
        raise SesameError(f"no sesame answers on {args.control}; -c FILE reads the kernel")
    else:
        found = _kernel_grants(args.config)
        if found is None:
            return 1
        rows = found
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table(rows)
    return 0


def cluster_status(args: argparse.Namespace) -> int:
    """``status --cluster``: each node's heartbeat in the store."""
    from sesame.cluster.store import nodes

    if not args.config:
        raise SesameError("status --cluster needs -c FILE: its [cluster] names the store")
    config = configuration.load(args.config)
    if config.cluster is None:
        raise SesameError(f"{args.config} has no [cluster]")
    try:
        found = nodes(config.cluster)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise SesameError(f"cannot read the store {config.cluster.where}: {why}") from None
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"no node of cluster {config.cluster.name} is telling the store")
    for node in found:
        rows, held = node.get("grants", []), node.get("grants_held", 0)
        more = (
            f", {held} grants held (the first {len(rows)} rows shown)" if held > len(rows) else ""
        )
        print(f"node {node['node']}: store {node.get('store', '?')}{more}")
        _table(rows)
    return 0


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no live grants")
        return
    table = [("ADDRESS", "PORT", "DOOR", "USER", "LEFT")] + [
        (
            r["address"],
            str(Port(r["proto"], r["port"], r.get("host", ""), r.get("to", 0))),
            r["door"],
            r["user"] or "-",
            f"{r['seconds_left']:.0f}s",
        )
        for r in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _kernel_grants(path: str) -> list[dict[str, Any]] | None:
    """The live grants as the kernel holds them (None: the table is not there)."""
    from sesame.firewall import NftGate

    config = configuration.load(path)
    common.need_admin("status")
    gate = NftGate(config.server.table)
    if not gate.exists():
        print(
            f"table inet {config.server.table} is not installed (sesame is not serving)",
            file=sys.stderr,
        )
        return None
    missing = host.missing_interface(config.server.interface)
    if missing:
        print(f"warning: {missing}: knocks and SPA are ignored", file=sys.stderr)
    holds = sorted(  # a holder whose own time is up (no daemon ran to say so) is gone
        ((e, h, e.left - h.before) for e in gate.entries() for h in e.held() if e.left > h.before),
        key=lambda x: (x[1].door, str(x[0].address), x[0].port),
    )
    return [grant_row(e.address, e.port, h.door, h.user, left) for e, h, left in holds]


def revoke(args: argparse.Namespace) -> int:
    from sesame.engine.events import Element, Grant
    from sesame.firewall import NftGate
    from sesame.firewall.elements import Entry, Holder

    answer = common.ask(args.control, {"command": "revoke", "who": args.who})
    if answer is not None:
        if not answer.get("ok"):
            print(str(answer.get("error")), file=sys.stderr)
            return 1
        for closed in answer.get("revoked", []):
            user = f", user {closed['user']}" if closed["user"] else ""
            for port in closed["ports"]:
                print(f"revoked {closed['address']} {port} (door {closed['door']}{user})")
        return 0
    if not args.config:
        raise SesameError(f"no sesame answers on {args.control}; -c FILE reads the kernel")
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
