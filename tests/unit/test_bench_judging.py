"""bench.judging's stand-ins for the kernel's NFLOG messages, and its rounds."""

from __future__ import annotations

import itertools
import time

from bench import judging
from bench.lab import Raw

from sesame.wire import nflog
from sesame.wire.packet import decode


def test_its_messages_read_as_the_kernels_do():
    packet = Raw(None, "10.0.0.1").udp(0x64400001, 40000, 62201, b"A" * 200)
    (item,) = nflog.messages(judging.logged(packet))
    assert item == nflog.Logged(judging.GROUP, b"", packet)
    assert decode(item.payload).payload == b"A" * 200


def test_every_datagram_of_each_kind_is_judged_and_refused(tmp_path):
    for kind in judging.KINDS:  # measure() stops if a datagram was not refused
        costs = judging.measure(kind, 128, tmp_path)
        assert set(costs) == {"split", "decode", "judge", "all"}
        assert costs["all"] > costs["split"] > 0


def test_apart_the_same_datagrams_are_judged_again_in_bursts(tmp_path):
    costs = judging.measure("fwknop-wrong:62201", 128, tmp_path, apart=0.0001)
    assert set(costs) == {"split", "decode", "judge", "all", "close", "apart"}
    assert costs["close"] > 0 and costs["apart"] > 0


def test_spaced_begins_each_read_apart_and_counts_only_the_work():
    begun: list[float] = []
    busy = judging.spaced(lambda read: begun.append(time.perf_counter()), [b"a"] * 3, 0.005)
    assert len(begun) == 3
    # (each call notes its time a little after the read began: 4 ms, not 5)
    assert all(later - earlier > 0.004 for earlier, later in itertools.pairwise(begun))
    assert busy < begun[-1] - begun[0]  # three calls that do nothing, not the waits
