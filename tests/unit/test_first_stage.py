"""The kernel's first stage, row by row of the table in its docstring."""

import math
from ipaddress import ip_address

from sesame.basics import FIRST_SIZE, Port
from sesame.engine.events import Knock
from sesame.engine.first_stage import (
    Draining,
    Forget,
    Kernel,
    ReadHit,
    SetPorts,
    Userspace,
    full,
    knock,
    noise,
    ports,
    tick,
    window,
)

A, B, C = (Port("tcp", n) for n in (7000, 8000, 9000))
PORTS = frozenset({A, B, C})
FIRST = frozenset({A})
LONGEST = 5.0
SOURCE = ip_address("192.0.2.7")
KNOCK = Knock(SOURCE, B)


class TestPorts:
    def test_from_userspace_with_first_ports_the_kernel_takes_over_with_followed_sources(self):
        [command] = ports(Userspace(frozenset()), PORTS, FIRST, 10.0, LONGEST)
        assert command == SetPorts(PORTS, FIRST, Kernel(PORTS, FIRST), tracked=True)

    def test_in_kernel_new_first_ports_are_set_without_following_again(self):
        [command] = ports(Kernel(PORTS, FIRST), PORTS, frozenset({B}), 10.0, LONGEST)
        assert command == SetPorts(PORTS, frozenset({B}), Kernel(PORTS, frozenset({B})))

    def test_in_kernel_nothing_changed_nothing_to_do(self):
        assert ports(Kernel(PORTS, FIRST), PORTS, FIRST, 10.0, LONGEST) == []

    def test_from_kernel_without_first_ports_first_knocks_are_read_back_a_window_longer(self):
        [command] = ports(Kernel(PORTS, FIRST), PORTS, None, 10.0, LONGEST)
        assert command == SetPorts(PORTS, None, Userspace(PORTS, 10.0 + window(LONGEST)))

    def test_in_userspace_without_first_ports_only_a_port_change_is_set(self):
        mode = Userspace(PORTS, 3.0)
        assert ports(mode, PORTS, None, 10.0, LONGEST) == []
        [command] = ports(mode, frozenset({A}), None, 10.0, LONGEST)
        assert command == SetPorts(frozenset({A}), None, Userspace(frozenset({A}), 3.0))

    def test_while_draining_first_ports_wait_for_calm(self):
        mode = Draining(PORTS, 16.0, 10.0, 100, 16.0)
        assert ports(mode, PORTS, FIRST, 11.0, LONGEST) == []
        [command] = ports(mode, frozenset({A}), FIRST, 11.0, LONGEST)
        assert command.first is None
        assert command.mode == Draining(frozenset({A}), 16.0, 10.0, 100, 16.0)


class TestFull:
    def test_in_kernel_a_full_map_drains_every_knock_to_sesame(self):
        [command] = full(Kernel(PORTS, FIRST), 10.0, 100, LONGEST)
        later = 10.0 + window(LONGEST)
        assert command == SetPorts(
            PORTS, None, Draining(PORTS, later, 10.0, 100, later), reason="full"
        )

    def test_elsewhere_a_full_map_changes_nothing(self):
        assert full(Userspace(PORTS), 10.0, 100, LONGEST) == []
        assert full(Draining(PORTS, 16.0, 10.0, 100, 16.0), 12.0, 200, LONGEST) == []


class TestTick:
    DRAINING = Draining(PORTS, 16.0, 10.0, 100, 16.0)

    def test_before_the_check_nothing_happens(self):
        assert tick(self.DRAINING, 15.9, 10**6, FIRST, LONGEST) == (self.DRAINING, [])

    def test_still_busy_the_next_check_is_a_window_on(self):
        busy = 100 + int(FIRST_SIZE / 2 / LONGEST * 6.0) + 10  # knocks in 6 s
        mode, commands = tick(self.DRAINING, 16.0, busy, FIRST, LONGEST)
        assert commands == []
        assert mode == Draining(PORTS, 16.0, 16.0, busy, 16.0 + window(LONGEST))

    def test_calm_gives_the_first_stage_back_to_the_kernel(self):
        mode, [command] = tick(self.DRAINING, 16.0, 110, FIRST, LONGEST)
        assert mode == Userspace(PORTS, 16.0)
        assert command == SetPorts(PORTS, FIRST, Kernel(PORTS, FIRST), tracked=True, reason="calm")

    def test_other_modes_do_not_tick(self):
        for mode in (Kernel(PORTS, FIRST), Userspace(PORTS, 3.0)):
            assert tick(mode, 100.0, 10**6, FIRST, LONGEST) == (mode, [])


class TestKnockAndNoise:
    def test_in_kernel_a_source_sesame_does_not_follow_has_its_first_knock_read_back(self):
        mode = Kernel(PORTS, FIRST)
        assert mode.read_until == math.inf
        assert knock(mode, SOURCE, 10.0, False, KNOCK) == [ReadHit(SOURCE, KNOCK)]
        assert knock(mode, SOURCE, 10.0, True, KNOCK) == []
        assert noise(mode, SOURCE, 10.0) == [Forget(SOURCE)]

    def test_after_the_kernel_stopped_first_knocks_are_read_back_until_read_until(self):
        mode = Userspace(PORTS, 16.0)
        assert knock(mode, SOURCE, 15.9, False, KNOCK) == [ReadHit(SOURCE, KNOCK)]
        assert noise(mode, SOURCE, 15.9) == [Forget(SOURCE)]
        assert knock(mode, SOURCE, 16.0, False, KNOCK) == []
        assert noise(mode, SOURCE, 16.0) == []

    def test_a_userspace_that_never_had_the_kernel_reads_nothing_back(self):
        assert knock(Userspace(PORTS), SOURCE, 0.0, False, KNOCK) == []
        assert noise(Userspace(PORTS), SOURCE, 0.0) == []
