"""SPA verification in the engine: every refusal has its reason and changes nothing;
arbitrary bytes never raise anything else and never grant."""

from __future__ import annotations

import contextlib
import os
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesame.basics import Port
from sesame.doors import Door, User
from sesame.engine import Engine, Opened, Spent
from sesame.errors import RemoteError
from sesame.testing import recorded
from sesame.wire import spa

KEY = bytes(range(32))
ALICE = User("alice", KEY, ("ssh",))
BOB = User("bob", bytes(32), ("ssh",), allow_other_address=True)
SSH = Door(name="ssh", spa_port=62201, open=(Port("tcp", 22),), open_for=30)
SPA_PORT = Port("udp", 62201)
A = ip_address("198.51.100.2")
WALL = 1_800_000_000.0


def packet(user="alice", key=KEY, door="ssh", address=A, stamp=WALL, nonce=None):
    return spa.encode(user, spa.cipher(key), door, address, int(stamp), nonce or os.urandom(12))


def engine():
    return Engine([SSH], [ALICE, BOB])


def test_a_valid_packet_opens_for_its_sender():
    e = engine()
    actions = recorded(e, e.spa(A, SPA_PORT, packet(), now=5.0, wall=WALL), 5.0)
    assert isinstance(actions[0], Spent)
    opened = actions[1]
    assert isinstance(opened, Opened)
    assert (opened.grant.address, opened.grant.user, opened.grant.expires) == (A, "alice", 35.0)


def test_the_same_packet_twice_is_a_replay():
    e = engine()
    data = packet()
    e.spa(A, SPA_PORT, data, 0.0, WALL)
    with pytest.raises(RemoteError, match="replay"):
        e.spa(A, SPA_PORT, data, 1.0, WALL + 1)
    with pytest.raises(RemoteError, match="replay"):
        e.spa(ip_address("198.51.100.3"), SPA_PORT, data, 1.0, WALL + 1)


@pytest.mark.parametrize(
    ("data", "source", "reason"),
    [
        (packet(stamp=WALL - 61), A, "stale timestamp"),
        (packet(stamp=WALL + 61), A, "future timestamp"),
        (packet(user="carol"), A, "unknown user"),
        (packet(key=bytes(32)), A, "bad tag"),
        (packet(door="web"), A, "unknown door"),
        (packet(), ip_address("198.51.100.3"), "address differs from source"),
        (packet()[:40], A, "spa size"),
        (packet() + b"x" * 100, A, "spa size"),
        (b"\x02" + packet()[1:], A, "spa version"),
    ],
)
def test_refusals_name_their_reason_and_change_nothing(data, source, reason):
    e = engine()
    with pytest.raises(RemoteError) as caught:
        e.spa(source, SPA_PORT, data, 0.0, WALL)
    assert caught.value.reason == reason
    assert len(e.grants) == 0 and len(e.replay) == 0


def test_every_flipped_bit_is_refused():
    data = packet()
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        e = engine()
        with pytest.raises(RemoteError):
            e.spa(A, SPA_PORT, bytes(flipped), 0.0, WALL)
        assert len(e.grants) == 0


def test_another_address_only_for_a_user_who_may():
    e = engine()
    other = ip_address("203.0.113.9")
    [_, opened] = recorded(
        e, e.spa(A, SPA_PORT, packet("bob", bytes(32), address=other), 0.0, WALL), 0.0
    )
    assert opened.grant.address == other


def test_the_door_must_be_asked_on_its_own_spa_port():
    e = engine()
    with pytest.raises(RemoteError, match="wrong spa port"):
        e.spa(A, Port("udp", 62202), packet(), 0.0, WALL)


def test_a_full_replay_window_fails_closed():
    e = Engine([SSH], [ALICE], replay_cap=1)
    e.spa(A, SPA_PORT, packet(), 0.0, WALL)
    with pytest.raises(RemoteError, match="replay window full"):
        e.spa(A, SPA_PORT, packet(), 0.0, WALL)


def test_the_replay_window_forgets_what_could_no_longer_be_accepted():
    e = engine()
    e.spa(A, SPA_PORT, packet(), 0.0, WALL)
    e.roll(WALL + 59)
    assert len(e.replay) == 1
    e.roll(WALL + 61)
    assert len(e.replay) == 0


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else_and_never_grant(data):
    e = engine()
    with contextlib.suppress(RemoteError):
        e.spa(A, SPA_PORT, data, 0.0, WALL)
    assert len(e.grants) == 0


@given(st.binary(min_size=1, max_size=60))
def test_arbitrary_bytes_after_a_valid_header_never_grant(tail):
    header = bytes([1, 5]) + b"alice"
    e = engine()
    with pytest.raises(RemoteError):
        e.spa(A, SPA_PORT, header + os.urandom(12) + tail, 0.0, WALL)
    assert len(e.grants) == 0


def test_a_source_that_keeps_failing_for_a_user_is_not_tried_but_the_user_elsewhere_is():
    """A stranger who knows alice's name costs a decryption only until its share of
    failures is spent; alice from her own address still opens at once."""
    e = engine()
    stranger = ip_address("203.0.113.66")
    for _ in range(10):
        with pytest.raises(RemoteError, match="bad tag"):
            e.spa(stranger, SPA_PORT, packet(key=bytes(32), address=stranger), 0.0, WALL)
    with pytest.raises(RemoteError, match="too many failures from this source"):
        e.spa(stranger, SPA_PORT, packet(address=stranger), 0.5, WALL)  # even a good one
    assert isinstance(recorded(e, e.spa(A, SPA_PORT, packet(), 0.5, WALL), 0.5)[1], Opened)
    # bob's name from the stranger's address is another share.
    with pytest.raises(RemoteError, match="bad tag"):
        e.spa(stranger, SPA_PORT, packet("bob", KEY, address=stranger), 0.5, WALL)
    # The share refills: a second later, one more try.
    with pytest.raises(RemoteError, match="bad tag"):
        e.spa(stranger, SPA_PORT, packet(key=bytes(32), address=stranger), 1.0, WALL)
    with pytest.raises(RemoteError, match="too many failures"):
        e.spa(stranger, SPA_PORT, packet(key=bytes(32), address=stranger), 1.0, WALL)


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=80))
def test_only_sources_that_failed_are_ever_refused_for_failures(sends):
    """Whatever order sources fail and succeed in, a source with fewer than its share
    of failures is always tried, and IPv6 sources share a /64."""
    from sesame.engine.limits import FAILURE_BURST, Failures

    failures, counts = Failures(rate=1e-9), {}  # no refill within the test
    for i, bad in sends:
        source = ip_address(f"2001:db8:0:{i}::{i + 1}")
        assert failures.over("alice", source, 0.0) == (counts.get(i, 0) >= FAILURE_BURST)
        if bad:
            failures.failed("alice", source, 0.0)
            counts[i] = counts.get(i, 0) + 1
        same_64 = ip_address(f"2001:db8:0:{i}::ffff")
        assert failures.over("alice", same_64, 0.0) == failures.over("alice", source, 0.0)
        assert not failures.over("bob", source, 0.0)
