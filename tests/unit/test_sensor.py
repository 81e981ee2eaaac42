"""The NFLOG sensor's reads, on a socket that never runs dry (no kernel needed)."""

from __future__ import annotations

import time

from sesame.sensor import nflog as sensor
from sesame.wire import nflog
from tests.helpers.packets import ipv4, logged_message, udp


class Flooded:
    """A socket with a flood's batch of QTHRESH_BUSY packets waiting at every read."""

    def __init__(self) -> None:
        message = logged_message(5155, ipv4("198.51.100.2", "198.51.100.1", 17, udp(62201, b"x")))
        self.data = message * sensor.QTHRESH_BUSY
        self.reads = 0

    def recv_into(self, buffer: bytearray) -> int:
        self.reads += 1
        buffer[: len(self.data)] = self.data
        return len(self.data)


def test_a_read_hands_on_at_most_a_batch_of_packets_whatever_the_kernel_gathers():
    """Bounded in packets, not reads: with the kernel gathering a flood's packets, a
    bound in reads would hold the loop (signals, the control socket, timers) for
    QTHRESH_BUSY times as many packets."""
    reader = sensor.NflogSensor.__new__(sensor.NflogSensor)
    reader.sock = flooded = Flooded()  # type: ignore[assignment]
    reader._early, reader.batched = [], True
    reader._window, reader._seen = time.monotonic(), 0
    reader._shapes = nflog.Shapes()
    reader._buffer = bytearray(65536)
    reader._view = memoryview(reader._buffer)
    assert len(list(reader.read())) == sensor.BATCH
    assert flooded.reads == sensor.BATCH // sensor.QTHRESH_BUSY
