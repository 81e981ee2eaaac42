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


def test_an_element_is_new_only_where_a_grant_just_opened_holds_it_alone():
    """What the firewall may just create (GrantBook.elements' ``new``): the element of a
    grant that opened, held by it alone and touched by no other decision of the batch."""
    from sesame.engine.grants import GrantBook

    ssh, other = parse_port("22/tcp"), parse_port("2222/tcp")
    a, b = IPv4Address("198.51.100.2"), IPv4Address("198.51.100.3")
    book = GrantBook()
    doors = {"ssh", "admin"}

    def grant(door: str, address: IPv4Address, ports: tuple, until: float) -> object:
        from sesame.engine.events import Grant

        return book.grant(Grant(door, address, ports, until))

    opened = grant("ssh", a, (ssh,), 30.0)
    assert isinstance(opened, Opened)
    [element] = book.elements([opened], doors)
    assert element.new and element.holders == (opened.grant,)
    refreshed = grant("ssh", a, (ssh,), 40.0)
    assert isinstance(refreshed, Refreshed)
    assert [e.new for e in book.elements([refreshed], doors)] == [False]
    # Another door opens the same port to the same address: the element was there.
    second = grant("admin", a, (ssh, other), 50.0)
    assert isinstance(second, Opened)
    news = {e.port: e.new for e in book.elements([second], doors)}
    assert news == {ssh: False, other: True}
    # Two grants opened in one batch on one element: neither alone decides it.
    first, again = grant("ssh", b, (ssh,), 30.0), grant("admin", b, (ssh,), 60.0)
    assert [e.new for e in book.elements([first, again], doors)] == [False]
    # A door that holds no element in the kernel (gate = false) never makes one new.
    assert [e.new for e in book.elements([opened], {"admin"})] == [False]
    closed = book.close("ssh", a, "expired")
    assert [e.new for e in book.elements(closed, doors)] == [False]


def test_grants_with_one_deadline_expire_together_whatever_their_family():
    """Deadlines that tie (one door, IPv4 and IPv6 addresses, the same ports) are
    ordered as they were first pushed, never by comparing the grants' addresses; a
    grant refreshed to the same deadline closes once."""
    from sesame.engine.events import Grant
    from sesame.engine.grants import GrantBook

    ssh = parse_port("22/tcp")
    book = GrantBook()
    v4, v6 = IPv4Address("198.51.100.2"), IPv6Address("2001:db8::2")
    for address in (v6, v4, v6):  # the second IPv6 grant refreshes the first
        book.grant(Grant("ssh", address, (ssh,), 30.0))
    assert book.next_deadline() == 30.0
    closed = book.expire(30.0)
    assert [c.grant.address for c in closed] == [v6, v4] and len(book) == 0
    assert book.next_deadline() is None
