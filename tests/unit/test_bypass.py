"""What other tables do to guarded ports, read from nft's JSON (sesame check)."""

from __future__ import annotations

from sesame.basics import Port
from sesame.firewall import bypass


def chain(table: str, name: str, **hook: object) -> dict:
    return {"chain": {"family": "ip", "table": table, "name": name, **hook}}


def rule(table: str, name: str, *expr: dict) -> dict:
    return {"rule": {"family": "ip", "table": table, "chain": name, "expr": list(expr)}}


def dport(proto: str, right: object) -> dict:
    left = {"payload": {"protocol": proto, "field": "dport"}}
    return {"match": {"op": "==", "left": left, "right": right}}


GUARDED = [Port("tcp", 8080), Port("tcp", 22)]


def test_a_dnat_of_a_guarded_port_is_a_note():
    listing = [
        chain("nat", "PREROUTING", type="nat", hook="prerouting", prio=-100),
        chain("nat", "DOCKER"),
        rule("nat", "DOCKER", dport("tcp", 8080), {"xt": {"type": "target", "name": "DNAT"}}),
        rule("nat", "DOCKER", dport("tcp", {"set": [22, 443]}), {"dnat": {"addr": "10.0.0.2"}}),
        rule("nat", "DOCKER", dport("udp", 8080), {"dnat": {"addr": "10.0.0.2"}}),
        rule("filter", "INPUT", dport("tcp", 22), {"accept": None}),
    ]
    assert bypass.warnings(listing, "sesame", GUARDED) == [
        "note: table ip nat, chain DOCKER DNATs guarded port 8080/tcp: sesame gates it"
        " before the DNAT, by the port the client asks for",
        "note: table ip nat, chain DOCKER DNATs guarded port 22/tcp: sesame gates it"
        " before the DNAT, by the port the client asks for",
    ]


def test_what_passes_before_the_guard_is_a_warning():
    listing = [
        chain("early", "pre", type="nat", hook="prerouting", prio=-160),
        {"chain": {"family": "netdev", "table": "fast", "name": "in", "hook": "ingress"}},
        {"rule": {"family": "netdev", "table": "fast", "chain": "in", "expr": [{"fwd": {}}]}},
        {
            "chain": {
                "family": "inet",
                "table": "sesame",
                "name": "x",
                "type": "nat",
                "hook": "prerouting",
                "prio": -200,
            }
        },
    ]
    first, second = bypass.warnings(listing, "sesame", GUARDED)  # not sesame's own
    assert first.startswith("warning: table ip early, chain pre rewrites destinations at")
    assert second.startswith("warning: table netdev fast, chain in forwards packets at ingress")
