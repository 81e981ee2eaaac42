"""A soak: legitimate users and hostile traffic mixed for a long while; what sesame
holds (memory, file descriptors, the replay record on disk) must stay flat."""

from __future__ import annotations

import random
import threading
import time
from ipaddress import ip_address

from bench import craft
from bench.reliability import junk
from bench.reliability.base import Lab, Row


def run(lab: Lab, seconds: float) -> None:
    lab.start()
    stop = threading.Event()
    rng = random.Random(51)
    server4, server6 = ip_address(lab.server.ipv4).packed, ip_address(lab.server.ipv6).packed
    frames = craft.Frames(lab.flood.netns, "eth0", lab.server_mac)
    hostile = [0]

    def flood() -> None:
        stream = junk.packets(10**9, server4, server6, seed=rng.randrange(1 << 30))
        while not stop.is_set():
            for _ in range(200):
                frames.send(next(stream))
            hostile[0] += 200
            stop.wait(0.1)  # about 2,000 packets a second

    thread = threading.Thread(target=flood)
    thread.start()
    opened = failed = 0
    warm = time.monotonic() + min(10.0, seconds / 6)
    start_figures: tuple[float, int, int] | None = None
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if start_figures is None and time.monotonic() >= warm:
                start_figures = _figures(lab)
            try:
                lab.knock(timeout=5)
                opened += 1
            except TimeoutError:
                failed += 1
            lab.spa()
            time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
        frames.close()
    assert start_figures is not None
    rss0, fds0, size0 = start_figures
    rss1, fds1, size1 = _figures(lab)
    lab.add(
        Row(
            "soak",
            "a user knocking and sending SPA every second amid about 2,000 hostile packets"
            " a second",
            f"{_span(seconds)}, {hostile[0]:,} hostile packets, {opened} knocks",
            f"RSS {rss0:.1f} → {rss1:.1f} MB, file descriptors {fds0} → {fds1}, state file"
            f" {size0:,} → {size1:,} bytes; {failed} knocks failed",
            failed == 0 and fds1 <= fds0 and rss1 - rss0 < 4 and size1 < 200_000 and lab.alive(),
            {"rss_mb": [rss0, rss1], "fds": [fds0, fds1], "state_bytes": [size0, size1]},
        )
    )


def _figures(lab: Lab) -> tuple[float, int, int]:
    path = lab.state() / "replay"
    size = path.stat().st_size if path.exists() else 0
    return round(lab.rss_mb(), 1), lab.fds(), size


def _span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
