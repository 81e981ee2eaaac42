"""What the host's other tables do to the ports sesame guards, for ``sesame check``.

sesame's guard sits in the prerouting hook at priority mangle (-150): after conntrack,
before any DNAT (dstnat, -100), so a guarded port the host forwards is gated by the
port the client asked for. What can still get past it, read from ``nft -j list
ruleset``: a nat chain that rewrites destinations in prerouting *before* -150 (the
guard then sees the port it became), and an ingress chain that forwards packets
(``fwd``) before any IP hook. A DNAT of a guarded port at the usual priority is
reported as a note: it is gated, before the DNAT.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sesame.basics import Port
from sesame.firewall.ruleset import GUARD_PRIORITY


def _rules(listing: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item["rule"] for item in listing if "rule" in item]


def _chains(listing: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for item in listing:
        chain = item.get("chain")
        if chain:
            out[chain["family"], chain["table"], chain["name"]] = chain
    return out


def _ports(expressions: list[dict[str, Any]]) -> set[Port]:
    """The destination ports a rule matches literally (``tcp dport 8080``)."""
    out: set[Port] = set()
    for expression in expressions:
        match = expression.get("match") or {}
        left, right = match.get("left") or {}, match.get("right")
        payload = left.get("payload") if isinstance(left, dict) else None
        if not payload or payload.get("field") != "dport" or match.get("op") not in ("==", "in"):
            continue
        proto = payload.get("protocol")
        values = right.get("set", []) if isinstance(right, dict) else [right]
        out |= {Port(proto, v) for v in values if isinstance(v, int) and proto in ("tcp", "udp")}
    return out


def _rewrites(expression: dict[str, Any]) -> bool:
    """A DNAT or a redirect: nft's own, or iptables-nft's target (``xt``)."""
    xt = expression.get("xt") or {}
    return "dnat" in expression or "redirect" in expression or xt.get("name") in _XT


_XT = ("DNAT", "REDIRECT")


def warnings(listing: list[dict[str, Any]], table: str, guarded: Iterable[Port]) -> list[str]:
    """What to tell the operator: warnings (the guard can be passed) and notes."""
    guarded = set(guarded)
    chains = _chains(listing)
    out = []
    for (family, name, chain), body in sorted(chains.items()):
        where = f"table {family} {name}, chain {chain}"
        if (family, name) == ("inet", table):
            continue
        prio = body.get("prio")
        early = isinstance(prio, int) and prio <= GUARD_PRIORITY
        if body.get("type") == "nat" and body.get("hook") == "prerouting" and early:
            out.append(
                f"warning: {where} rewrites destinations at priority {prio}, before"
                f" sesame's guard ({GUARD_PRIORITY}): a guarded port it DNATs is gated"
                " by the port it becomes, not the one the client asked for"
            )
    for rule in _rules(listing):
        family, name, chain = rule["family"], rule["table"], rule["chain"]
        if (family, name) == ("inet", table):
            continue
        expressions = rule.get("expr", [])
        where = f"table {family} {name}, chain {chain}"
        hook = chains.get((family, name, chain), {}).get("hook")
        if hook == "ingress" and any("fwd" in e for e in expressions):
            out.append(
                f"warning: {where} forwards packets at ingress, before any of sesame's"
                " hooks: what it forwards is not gated"
            )
        if any(_rewrites(e) for e in expressions):
            for port in sorted(_ports(expressions) & guarded):
                out.append(
                    f"note: {where} DNATs guarded port {port}: sesame gates it before the"
                    " DNAT, by the port the client asks for"
                )
    return out
