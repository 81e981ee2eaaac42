"""bench.judging's stand-ins for the kernel's NFLOG messages, and its rounds."""

from __future__ import annotations

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
