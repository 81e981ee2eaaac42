"""The regression guard: a small fixed workload through the pure engine, timed
relative to a calibration loop run in the same process (so a slower or busier machine
moves both), compared against the ratios stored in ``bench/baseline.json``.

    python -m bench.guard            # print the ratios and the baseline's
    python -m bench.guard --update   # store the ratios as the new baseline

The CI test fails only when a ratio grows past ``LIMIT`` times its baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from sesame.basics import Port
from sesame.doors import Door, User
from sesame.engine import Engine, Knock
from sesame.errors import RemoteError
from sesame.testing import recorded
from sesame.wire import decode, spa

BASELINE = Path(__file__).with_name("baseline.json")
LIMIT = 3.0
KEY = bytes(range(32))
WALL = 1_800_000_000.0


def calibrate() -> None:
    """Plain Python work of the same kind: dict churn, tuples, small objects."""
    table: dict[int, tuple[int, float]] = {}
    for i in range(60_000):
        key = (i * 7919) % 5003
        stage, _ = table.pop(key, (0, 0.0))
        table[key] = (stage + 1, float(i))


def _knocks() -> Callable[[], None]:
    doors = [
        Door(
            name=f"d{n}",
            sequence=(Port("tcp", 7000 + n), Port("tcp", 8000 + n), Port("udp", 9000 + n)),
            open=(Port("tcp", 22),),
        )
        for n in range(4)
    ]
    rng = random.Random(1)
    stream = [
        (IPv4Address(rng.randrange(1 << 32)), rng.choice(doors[0].sequence)) for _ in range(20_000)
    ]

    def run() -> None:
        engine = Engine(doors, max_sources=5_000)
        for i, (source, port) in enumerate(stream):
            engine.knock(Knock(source, port), i * 0.001)

    return run


def _spa() -> Callable[[], None]:
    door = Door(name="ssh", spa_port=62201, open=(Port("tcp", 22),))
    user = User("alice", KEY, ("ssh",))
    rng = random.Random(2)
    junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(20, 120))) for _ in range(2_000)]
    aead = spa.cipher(KEY)
    sources = [IPv4Address(0x0A000000 + i) for i in range(500)]
    valid = [spa.encode("alice", aead, "ssh", s, int(WALL), os.urandom(12)) for s in sources]
    port = Port("udp", 62201)

    def run() -> None:
        engine = Engine([door], [user], spa_burst=len(valid))
        for data in junk:
            with contextlib.suppress(RemoteError):
                engine.spa(sources[0], port, data, 0.0, WALL)
        for source, data in zip(sources, valid, strict=True):
            recorded(engine, engine.spa(source, port, data, 0.0, WALL), 0.0)

    return run


def _decode() -> Callable[[], None]:
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        40,
        1,
        0,
        64,
        6,
        0,
        bytes([198, 51, 100, 2]),
        bytes([198, 51, 100, 1]),
    )
    packet = ip + struct.pack(">HHIIBBHHH", 40000, 7000, 1, 0, 5 << 4, 0x02, 1024, 0, 0)

    def run() -> None:
        for _ in range(20_000):
            decode(packet)

    return run


def _best(run: Callable[[], None], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure() -> dict[str, float]:
    """Each workload's time divided by the calibration loop's (lower is faster)."""
    workloads = {"knocks": _knocks(), "spa": _spa(), "decode": _decode()}
    unit = _best(calibrate)
    return {name: round(_best(run) / unit, 3) for name, run in workloads.items()}


def baseline() -> dict[str, float]:
    return {k: float(v) for k, v in json.loads(BASELINE.read_text()).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="store these ratios")
    args = parser.parse_args()
    ratios = measure()
    if args.update:
        BASELINE.write_text(json.dumps(ratios, indent=2) + "\n")
    stored = baseline() if BASELINE.exists() else {}
    for name, ratio in ratios.items():
        print(f"{name:8} {ratio:8.3f}   baseline {stored.get(name, float('nan')):8.3f}")


if __name__ == "__main__":
    main()
