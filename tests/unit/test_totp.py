"""One-time sequences: derivation, acceptance window, spending, rolling."""

from __future__ import annotations

import itertools
from ipaddress import ip_address

from hypothesis import given
from hypothesis import strategies as st

from sesame.basics import Port
from sesame.doors import Door, User
from sesame.engine import Engine, Knock, Opened, Spent, totp
from sesame.testing import recorded

KEY = bytes(range(32))
PHONE = Door(
    name="phone",
    sequence_from="totp",
    port_range=(40000, 40999),
    seq_timeout=10,
    open=(Port("tcp", 22),),
)
ALICE = User("alice", KEY, ("phone",))
A = ip_address("198.51.100.2")
WALL = 1_800_000_010.0


def seq(step, key=KEY):
    return totp.sequence(totp.subkey(key), "phone", step, (40000, 40999), 4)


def feed(engine, ports, now=0.0, source=A):
    actions = []
    for i, port in enumerate(ports):
        when = now + i * 0.1
        actions += recorded(engine, engine.knock(Knock(source, port), when), when)
    return actions


@given(st.integers(0, 2**40), st.integers(2, 16))
def test_sequences_stay_in_range_without_repeats_in_a_row(step, length):
    ports = totp.sequence(totp.subkey(KEY), "phone", step, (40000, 40255), length)
    assert len(ports) == length
    assert all(40000 <= p.number <= 40255 and p.proto == "tcp" for p in ports)
    assert all(a != b for a, b in itertools.pairwise(ports))


def test_sequences_depend_on_key_step_and_door():
    assert seq(1) == seq(1)
    assert seq(1) != seq(2)
    assert seq(1) != seq(1, key=bytes(32))
    assert totp.sequence(totp.subkey(KEY), "other", 1, (40000, 40999), 4) != seq(1)


def test_the_current_sequence_opens_once_then_is_spent():
    e = Engine([PHONE], [ALICE])
    ports = e.roll(WALL)
    step = totp.step_of(WALL)
    assert set(seq(step)) <= ports
    actions = feed(e, seq(step))
    assert [type(a) for a in actions] == [Spent, Opened]
    assert actions[1].grant.user == "alice"
    assert feed(e, seq(step), now=1.0) == []  # replayed inside its step: nothing


def test_previous_and_next_steps_are_accepted_older_ones_not():
    e = Engine([PHONE], [ALICE])
    e.roll(WALL)
    step = totp.step_of(WALL)
    assert feed(e, seq(step - 1))
    assert feed(e, seq(step + 1), now=5.0)
    assert feed(e, seq(step - 2), now=10.0) == []


def test_rolling_keeps_spent_sequences_spent():
    e = Engine([PHONE], [ALICE])
    e.roll(WALL)
    step = totp.step_of(WALL)
    feed(e, seq(step))
    e.roll(WALL + 30)  # now the spent one is the previous step
    assert feed(e, seq(step), now=40.0) == []
    assert feed(e, seq(step + 1), now=50.0)


def test_a_restarted_engine_with_the_replay_keys_refuses_a_spent_sequence():
    e = Engine([PHONE], [ALICE])
    e.roll(WALL)
    step = totp.step_of(WALL)
    [spent, _] = feed(e, seq(step))
    again = Engine([PHONE], [ALICE])
    again.replay.restore([(spent.key, spent.until)], WALL)
    again.roll(WALL)
    assert feed(again, seq(step)) == []
