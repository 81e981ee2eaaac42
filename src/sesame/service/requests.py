"""What the daemon answers on its control socket (see :mod:`.control`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

from sesame.daemon import Daemon
from sesame.engine import Closed
from sesame.service.control import Request, grant_row, reply

log = logging.getLogger("sesame")


def answer(daemon: Daemon, request: Request, reload: Callable[[], str | None]) -> bytes:
    """The answer to a valid request; ``reload`` reloads (as SIGHUP does) and returns
    why the new config was refused, or None."""
    command = request["command"]
    if command in ("status", "revoke"):
        daemon.adopt(daemon.clock())  # every grant from before, if some are left
    if command == "status":
        now, cluster = daemon.clock(), daemon.cluster
        node = {} if cluster is None else {"cluster": cluster.status(now, daemon.wall())}
        return reply(True, grants=grants(daemon, now), **node)
    if command == "counters":
        return reply(True, counters=daemon.counts())
    if command == "revoke":
        revoked = revoke(daemon, request["who"], daemon.clock())
        if not revoked:
            return reply(False, error=f"no live grant for {request['who']}")
        return reply(True, revoked=revoked)
    refused = reload()
    return reply(refused is None, **({"error": refused} if refused else {}))


def grants(daemon: Daemon, now: float) -> list[dict[str, Any]]:
    """Every live grant as the daemon holds it, a row a port."""
    return [
        grant_row(g.address, port, g.door, g.user, round(max(0.0, g.expires - now), 3))
        for g in sorted(daemon.engine.grants.all(), key=lambda g: (g.door, str(g.address)))
        for port in g.ports
    ]


def revoke(daemon: Daemon, who: str, now: float) -> list[dict[str, Any]]:
    """Close every grant of a user or an address now (logged as revoked, stop commands
    run, elements deleted); returns what was closed."""
    try:
        address: object = ip_address(who)
    except ValueError:
        address = None
    closed: list[Closed] = []
    for grant in daemon.engine.grants.all():
        if grant.user == who or grant.address == address:
            closed += daemon.engine.revoke(grant.door, grant.address)
    daemon.carry_out(closed, now)
    return [
        {
            "door": c.grant.door,
            "address": str(c.grant.address),
            "user": c.grant.user,
            "ports": [str(port) for port in c.grant.ports],
        }
        for c in closed
    ]
