"""Sequence matching: the transition table, bounds, and properties."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.basics import Port, parse_port
from sesame.engine import Pattern, SequenceMatcher, Target, step
from sesame.engine.sequences import NO_ATTEMPT

SEQ = tuple(parse_port(p) for p in ("7000/tcp", "8000/tcp", "9000/udp"))
P = Pattern(Target("ssh"), SEQ, 5.0)
A = IPv4Address("198.51.100.2")
B = IPv4Address("198.51.100.3")


def feed(m: SequenceMatcher, ports: list[str], source=A, t0=0.0, dt=0.1):
    done = []
    for i, p in enumerate(ports):
        done += m.feed(source, parse_port(p), t0 + i * dt)
    return done


class TestStep:
    """The transition table of sequences.step, row by row."""

    @pytest.mark.parametrize(
        ("attempt", "port", "now", "expected"),
        [
            (NO_ATTEMPT, "7000/tcp", 1.0, ((1, 1.0), False)),  # first port starts
            (NO_ATTEMPT, "8000/tcp", 1.0, (NO_ATTEMPT, False)),  # not first: nothing
            ((1, 1.0), "8000/tcp", 2.0, ((2, 1.0), False)),  # next port advances
            ((2, 1.0), "9000/udp", 2.0, (NO_ATTEMPT, True)),  # last port completes
            ((2, 1.0), "8000/tcp", 2.0, ((2, 1.0), False)),  # duplicate: unchanged
            ((2, 1.0), "9000/tcp", 2.0, (NO_ATTEMPT, False)),  # wrong proto resets
            ((2, 1.0), "7000/tcp", 2.0, ((1, 2.0), False)),  # reset, restarts at first
            ((2, 1.0), "9000/udp", 6.5, (NO_ATTEMPT, False)),  # too late: gone
            ((1, 1.0), "7000/tcp", 9.0, ((1, 9.0), False)),  # too late, first port: new
        ],
    )
    def test_row(self, attempt, port, now, expected):
        assert step(P, attempt, parse_port(port), now) == expected

    def test_one_port_sequence_completes_at_once(self):
        single = Pattern(Target("x"), (Port("udp", 1),), 1.0)
        assert step(single, NO_ATTEMPT, Port("udp", 1), 0.0) == (NO_ATTEMPT, True)


class TestMatcher:
    def test_correct_sequence_completes(self):
        m = SequenceMatcher([P])
        assert feed(m, ["7000/tcp", "8000/tcp", "9000/udp"]) == [Target("ssh")]
        assert len(m) == 0  # a completed attempt holds no memory

    def test_wrong_order_never_completes(self):
        m = SequenceMatcher([P])
        assert feed(m, ["8000/tcp", "7000/tcp", "9000/udp"]) == []

    def test_wrong_port_in_between_resets(self):
        m = SequenceMatcher([P])
        assert feed(m, ["7000/tcp", "8000/tcp", "7001/tcp", "9000/udp"]) == []

    def test_too_slow_resets(self):
        m = SequenceMatcher([P])
        assert feed(m, ["7000/tcp", "8000/tcp", "9000/udp"], dt=3.0) == []

    def test_duplicates_of_the_matched_packet_are_harmless(self):
        m = SequenceMatcher([P])
        ports = ["7000/tcp", "7000/tcp", "8000/tcp", "8000/tcp", "9000/udp"]
        assert feed(m, ports) == [Target("ssh")]

    def test_sources_do_not_mix(self):
        m = SequenceMatcher([P])
        assert m.feed(A, SEQ[0], 0.0) == []
        assert m.feed(B, SEQ[1], 0.1) == []  # B's wrong port does not reset A
        assert m.feed(A, SEQ[1], 0.2) == []
        assert m.feed(B, SEQ[2], 0.3) == []
        assert m.feed(A, SEQ[2], 0.4) == [Target("ssh")]

    def test_memory_is_capped_and_oldest_evicted(self):
        m = SequenceMatcher([P], max_sources=100)
        for i in range(1000):
            m.feed(ip_address(f"10.0.{i // 250}.{i % 250}"), SEQ[0], i * 0.001)
        assert len(m) == 100
        assert m.evicted == 900
        assert m.stage(ip_address("10.0.3.249"), Target("ssh")) == 1  # the newest stays

    def test_expired_sources_are_forgotten(self):
        m = SequenceMatcher([P])
        m.feed(A, SEQ[0], 0.0)
        m.expire(4.0)
        assert len(m) == 1
        m.expire(5.1)
        assert len(m) == 0

    def test_expired_sources_go_before_live_ones_are_evicted(self):
        m = SequenceMatcher([P], max_sources=2)
        m.feed(A, SEQ[0], 0.0)
        m.feed(B, SEQ[0], 10.0)  # A expired at 5.0: it makes room, nothing evicted
        assert m.evicted == 0
        assert m.stage(B, Target("ssh")) == 1


PORTS = st.sampled_from(
    [Port("tcp", 7000), Port("tcp", 8000), Port("udp", 9000), Port("udp", 7000), Port("tcp", 9000)]
)


def collapse(ports):
    out = []
    for p in ports:
        if not out or out[-1] != p:
            out.append(p)
    return out


@given(st.lists(st.tuples(PORTS, st.floats(0, 3)), max_size=60))
@settings(max_examples=300)
def test_completion_means_the_sequence_was_sent_in_time(stream):
    """Whenever a sequence completes, the packets since its first knock, with
    consecutive duplicates collapsed, are exactly the sequence, within seq_timeout."""
    m = SequenceMatcher([P])
    now, times, ports = 0.0, [], []
    for port, gap in stream:
        now += gap
        times.append(now)
        ports.append(port)
        if m.feed(A, port, now):
            assert any(
                collapse(ports[j:]) == list(SEQ) and now - times[j] <= P.timeout
                for j in range(len(ports))
            )


@given(st.lists(st.integers(0, 2), max_size=8), st.floats(0, 1.6))
def test_the_sequence_with_duplicates_always_completes(repeats, gap):
    """The right ports in order, each sent 1-3 times, inside seq_timeout, open."""
    m = SequenceMatcher([P])
    stream = [
        port
        for i, port in enumerate(SEQ)
        for _ in range(1 + (repeats[i] if i < len(repeats) else 0))
    ]
    done = [m.feed(A, port, i * gap / len(stream)) for i, port in enumerate(stream)]
    assert [d for d in done if d] == [[Target("ssh")]]


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), PORTS), max_size=300), st.integers(1, 50))
def test_memory_never_exceeds_the_cap(knocks, cap):
    m = SequenceMatcher([P], max_sources=cap)
    for i, (addr, port) in enumerate(knocks):
        m.feed(IPv4Address(addr), port, i * 0.01)
        assert len(m) <= cap
