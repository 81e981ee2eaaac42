"""What judging a datagram costs in the daemon's own process, stage by stage, with no
kernel and no root:

    python -m bench.judging [COUNT] [--apart MS]   # default: 131072 of each kind, 3.2 ms

The datagrams of the benchmark's floods that reach sesame (``bench.flood``'s
``fwknop-wrong`` and ``sesame-wrong``: well formed, a wrong key, from a pool of
spoofed sources), each in an NFLOG message laid out as the kernel sends one for a
packet that came in over a bridge port (ten attributes: the packet header, the prefix,
two interface indexes, the hardware address, type, length and header, the timestamp,
then the packet), 64 to a netlink datagram as during a flood. For each kind, the
microseconds a datagram, the fastest of five rounds (the stages in turn):

- split: the netlink datagram into logged packets (``sesame.wire.nflog.messages``,
  with the socket's ``Shapes`` as the sensor splits them);
- decode: the IP and UDP headers (``sesame.wire.packet.decode``), on its own: what a
  datagram the daemon judges whole costs first;
- all: what the daemon does with the netlink datagram (split, the first look
  refusing a wrongly keyed fwknop datagram at sight as it is split, ``Daemon.sieve``;
  what it does not refuse, ``Daemon.packets``: decode, judge, count, audit; an
  in-memory gate);
- judge: all, less split;
- close and apart: all again for the first SPACED netlink datagrams, in turn back to
  back and each begun MS milliseconds after the one before, as the kernel hands a
  flood's datagrams on (64 every 3.2 ms at the benchmark's 20,000 a second), the waits
  not counted: the same work done in bursts, as in the daemon during a flood. (Taken
  in turn and over the same datagrams: this machine's pace moves by half within
  seconds, and figures taken apart in time compare the pace more than the work.)

In the daemon during a flood more is done besides: the system calls and the loop
around them (the benchmark's "daemon's own CPU").
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.__main__ import FLOOD_USERS, SESAME_CONFIG
from bench.flood import packets
from bench.lab import Raw
from sesame import config
from sesame.daemon import Daemon
from sesame.testing import FakeClock, MemoryGate
from sesame.wire import netlink as nl
from sesame.wire import nflog
from sesame.wire.packet import decode

KINDS = ("fwknop-wrong:62201", "sesame-wrong:62202")
PER_READ = 64  # packets in one netlink datagram: the sensor's queue threshold in a flood
ROUNDS = 5
GROUP = 5155
SPACED = 256  # netlink datagrams judged apart in each round (16,384 datagrams)


def logged(packet: bytes) -> bytes:
    """One NFULNL_MSG_PACKET as the kernel builds it (attributes in its order)."""
    attrs = [
        (nflog.NFULA_PACKET_HDR, b"\x08\x00\x01\x00"),  # IPv4, hook input
        (nflog.NFULA_PREFIX, b"\0"),  # none
        (nflog.NFULA_IFINDEX_INDEV, struct.pack(">I", 2)),  # the bridge
        (6, struct.pack(">I", 3)),  # NFULA_IFINDEX_PHYSINDEV: its port
        (8, struct.pack(">H2x6s2x", 6, b"\x02\0\0\0\0\x01")),  # NFULA_HWADDR
        (15, struct.pack(">H", 1)),  # NFULA_HWTYPE: ethernet
        (17, struct.pack(">H", 14)),  # NFULA_HWLEN
        (16, bytes(12) + b"\x08\x00"),  # NFULA_HWHEADER
        (3, struct.pack(">QQ", 1_800_000_000, 0)),  # NFULA_TIMESTAMP
        (nflog.NFULA_PAYLOAD, packet),
    ]
    body = nl.nfgenmsg(socket.AF_INET, GROUP) + b"".join(nl.attr(k, v) for k, v in attrs)
    return nl.message(nl.subsystem(nflog.NFNL_SUBSYS_ULOG, nflog.NFULNL_MSG_PACKET), 0, 0, body)


def fastest(stages: dict[str, Callable[[], None]], count: int) -> dict[str, float]:
    """Microseconds a datagram for each stage: the fastest of ROUNDS rounds, the stages
    taking turns (this machine's pace drifts: stages timed a minute apart differ)."""
    best = dict.fromkeys(stages, float("inf"))
    for _ in range(ROUNDS):
        for name, work in stages.items():
            begun = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - begun)
    return {name: seconds / count * 1e6 for name, seconds in best.items()}


def spaced(work: Callable[[bytes], None], reads: list[bytes], apart: float) -> float:
    """Seconds ``work`` took over ``reads``, each begun ``apart`` seconds after the one
    before (the waits between them not counted)."""
    busy, due = 0.0, time.perf_counter()
    for read in reads:
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        begun = time.perf_counter()
        work(read)
        busy += time.perf_counter() - begun
        due = begun + apart
    return busy


def measure(kind: str, count: int, state: Path, apart: float = 0.0) -> dict[str, float]:
    """Microseconds a datagram of ``kind`` for each stage (``apart``: seconds between
    the netlink datagrams of the "apart" stage; 0, none)."""
    text = SESAME_CONFIG.format(tmp=state, users=FLOOD_USERS)
    clock = FakeClock()
    daemon = Daemon(config.parse(text, "bench.toml"), MemoryGate(clock), clock)
    daemon.start()
    made = packets(Raw(None, "10.0.0.1"), kind, count)
    reads = [b"".join(logged(p) for p in made[i : i + PER_READ]) for i in range(0, count, PER_READ)]
    items = [item for read in reads for item in nflog.messages(read)]
    shapes = nflog.Shapes()  # as the sensor splits what it reads
    payloads = [item.payload for item in items if isinstance(item, nflog.Logged)]

    def split() -> None:
        for read in reads:
            for _ in nflog.messages(read, None, shapes):
                pass

    def decoding() -> None:
        for payload in payloads:
            decode(payload)

    def judged(read: bytes) -> None:  # as the daemon's loop and sensor do
        now = clock()
        daemon.packets((i for i in nflog.messages(read, daemon.sieve(now), shapes) if i), now)

    def everything() -> None:
        for read in reads:
            judged(read)

    costs = fastest({"split": split, "decode": decoding, "all": everything}, count)
    costs["judge"] = costs["all"] - costs["split"]
    judged_count = ROUNDS * count
    if apart:  # the first SPACED reads, back to back and apart in turn
        few, n = reads[:SPACED], min(count, SPACED * PER_READ)
        best = {"close": float("inf"), "apart": float("inf")}
        for _ in range(ROUNDS):
            best["close"] = min(best["close"], spaced(judged, few, 0.0))
            best["apart"] = min(best["apart"], spaced(judged, few, apart))
        costs |= {name: seconds / n * 1e6 for name, seconds in best.items()}
        judged_count += 2 * ROUNDS * n
    refused = sum(daemon.drops.values())
    if refused != judged_count:  # each datagram judged, and each refused
        raise SystemExit(f"{kind}: {refused} refused of {judged_count}")
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.judging",
        description="What judging a datagram of the floods that reach sesame costs in the"
        " daemon's own process, stage by stage, with no kernel and no root.",
    )
    parser.add_argument(
        "count", type=int, nargs="?", default=1 << 17, help="datagrams of each kind"
    )
    parser.add_argument(
        "--apart",
        type=float,
        default=1000 * PER_READ / 20_000,
        metavar="MS",
        help="milliseconds between the netlink datagrams of the last stage (default 3.2:"
        " 64 every 3.2 ms, as at 20,000 a second; 0: no such stage)",
    )
    args = parser.parse_args()
    if args.count < 1 or args.apart < 0:
        parser.error("COUNT must be at least 1 and MS not negative")
    logging.getLogger("sesame").addHandler(logging.NullHandler())  # refusals: not printed
    logging.getLogger("sesame").propagate = False
    state = Path(tempfile.mkdtemp(prefix="sesame-judging-"))
    try:
        for kind in KINDS:
            c = measure(kind, args.count, state, args.apart / 1000)
            apart = (
                f"; the first {min(args.count, SPACED * PER_READ)} again: {c['close']:.2f} µs"
                f" back to back, {c['apart']:.2f} µs {args.apart:g} ms apart"
                if "apart" in c
                else ""
            )
            print(
                f"{kind.split(':')[0]}: split {c['split']:.2f} µs, then {c['judge']:.2f}"
                f" (decode alone {c['decode']:.2f}); in all {c['all']:.2f} µs a datagram{apart}"
            )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
