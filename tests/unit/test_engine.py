"""The engine: grants, refresh, un-knock, expiry, reconfiguration."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from sesame.basics import parse_port
from sesame.doors import Door
from sesame.engine import Closed, Engine, Knock, Opened, Refreshed

A = IPv4Address("198.51.100.2")
SSH = Door(
    name="ssh",
    sequence=tuple(parse_port(p) for p in ("7000", "8000", "9000/udp")),
    close_sequence=tuple(parse_port(p) for p in ("9000", "8000", "7000")),
    open=(parse_port("22"),),
    seq_timeout=5,
    open_for=30,
)
WEB = Door(name="web", sequence=(parse_port("5000/udp"),), open=(parse_port("443"),))


def knock(engine, ports, source=A, t0=0.0):
    out = []
    for i, p in enumerate(ports):
        out += engine.knock(Knock(source, parse_port(p)), t0 + i * 0.1)
    return out


def test_a_knock_opens_the_door_to_the_knocker():
    engine = Engine([SSH])
    [decision] = knock(engine, ["7000", "8000", "9000/udp"])
    assert isinstance(decision, Opened)
    assert decision.grant.address == A
    assert decision.grant.ports == (parse_port("22"),)
    assert decision.grant.expires == 0.2 + 30


def test_knocking_again_refreshes_one_grant():
    engine = Engine([SSH])
    knock(engine, ["7000", "8000", "9000/udp"])
    [decision] = knock(engine, ["7000", "8000", "9000/udp"], t0=10)
    assert isinstance(decision, Refreshed)
    assert len(engine.grants) == 1
    [grant] = engine.grants.at("ssh", A)
    assert grant.expires == 10.2 + 30
    assert engine.tick(31.0) == []  # the first deadline no longer counts


def test_unknock_closes_early():
    engine = Engine([SSH])
    knock(engine, ["7000", "8000", "9000/udp"])
    [decision] = knock(engine, ["9000", "8000", "7000"], t0=1)
    assert isinstance(decision, Closed) and decision.reason == "unknock"
    assert len(engine.grants) == 0


def test_unknock_without_a_grant_decides_nothing():
    engine = Engine([SSH])
    assert knock(engine, ["9000", "8000", "7000"]) == []


def test_grants_expire_on_tick():
    engine = Engine([SSH])
    knock(engine, ["7000", "8000", "9000/udp"])
    assert engine.next_deadline() == 30.2
    assert engine.tick(30.1) == []
    [closed] = engine.tick(30.2)
    assert closed.reason == "expired"
    assert engine.next_deadline() is None


def test_ipv6_and_ipv4_grants_are_separate():
    engine = Engine([SSH])
    v6 = IPv6Address("2001:db8::2")
    knock(engine, ["7000", "8000", "9000/udp"])
    [decision] = knock(engine, ["7000", "8000", "9000/udp"], source=v6)
    assert isinstance(decision, Opened)
    assert len(engine.grants) == 2


def test_reconfigure_keeps_grants_of_doors_that_remain():
    engine = Engine([SSH, WEB])
    knock(engine, ["7000", "8000", "9000/udp"])
    knock(engine, ["5000/udp"])
    decisions = engine.reconfigure([SSH], [], max_sources=100, spa_window=60, now=1.0)
    assert [(d.grant.door, d.reason) for d in decisions] == [("web", "door removed")]
    assert engine.grants.at("ssh", A) != []


def test_counters():
    engine = Engine([SSH])
    knock(engine, ["7000", "8000", "9000/udp"])
    knock(engine, ["7000", "8000", "9000/udp"])
    assert engine.counters["opened"] == 1
    assert engine.counters["refreshed"] == 1
    assert engine.counters["knocks"] == 6
