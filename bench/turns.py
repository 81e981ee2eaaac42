"""The daemon's CPU a grant, for commits of sesame taken in turn (run as root, from a
git checkout; a lab of its own):

    python -m bench.turns [--rounds N] [--rate R] REV [REV...]    # e.g. HEAD~1 HEAD

Each REV's ``src`` is taken out of git (``git archive``) and, round after round, each
in turn serves the benchmark's config in the lab: a fresh daemon, then the benchmark's
flood of valid SPA (20,000 datagrams from as many new sources, 1,000 users in turn) at
R a second (default 4,000: slow enough that none is lost to a full socket; 0: as fast
as Python sends, as the benchmark's throughput does, when the kernel drops what the
daemon's socket cannot hold), and the daemon's CPU (all its threads, from /proc) over
the grants it made. With ``--lone N``, before the flood, N of alice's SPA one at a
time, as the benchmark's latency measurement sends them: the median and p95 of knock →
open (the path of a lone datagram, on a CPU that was idle). With ``--wrong``, the
benchmark's flood of wrongly keyed fwknop-format datagrams (100,000 at 20,000 a second)
instead of valid SPA, and the daemon's CPU a datagram refused. For each REV, the median of
the rounds with the least and the most. (Taken in turn: this machine's pace
moves by half within minutes, and one run of each would measure the machine.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bench import rules
from bench.__main__ import FLOOD_USERS, SESAME_CONFIG, Bench
from bench.lab import counters, nft, pace, settle, usage, write
from bench.runs import spread
from sesame.lab import DaemonProcess

KIND, COUNT = "sesame-valid:62202", 20_000


def tree(rev: str, into: Path) -> str:
    """``rev``'s src directory, unpacked under ``into``; its path."""
    data = subprocess.run(["git", "archive", rev, "src"], capture_output=True, check=True).stdout
    where = into / rev.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(where, filter="data")
    return str(where / "src")


def granted(daemon: DaemonProcess, counter: str = "spa accepted") -> int:
    """The daemon's ``counter`` once it stops moving (as the benchmark's throughput
    waits for it): SPA accepted, or another."""
    return settle(lambda: counters(daemon).get(counter, 0), 0.5, 0.05)[0]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turns", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=4000.0)
    parser.add_argument("--lone", type=int, default=0, help="lone SPA timed a round")
    parser.add_argument(
        "--wrong", action="store_true", help="wrongly keyed fwknop SPA at 20,000/s instead"
    )
    parser.add_argument("revs", nargs="+")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sesame-turns-"))
    trees = {rev: tree(rev, work) for rev in args.revs}
    bench = Bench(argparse.Namespace(flood=COUNT, flood_rate=args.rate))
    # --wrong: bench.rules' flood (the benchmark's wrongly keyed fwknop-format datagrams),
    # and the CPU a datagram refused (the counter of that refusal).
    kind, count, rate = (
        (rules.KIND, rules.COUNT, rules.RATE) if args.wrong else (KIND, COUNT, args.rate)
    )
    counter, unit = (
        ("dropped fwknop bad hmac", "datagram") if args.wrong else ("spa accepted", "grant")
    )
    taken: dict[str, list[float]] = {rev: [] for rev in trees}
    lone: dict[str, list[tuple[float, float]]] = {rev: [] for rev in trees}
    try:
        config = write(work / "sesame.toml", SESAME_CONFIG.format(tmp=work, users=FLOOD_USERS))
        print(f"pace {pace()} ms", flush=True)
        for turn in range(args.rounds):
            order = list(trees) if turn % 2 == 0 else list(trees)[::-1]
            for rev in order:
                daemon = DaemonProcess(bench.server.netns, config)
                daemon.start(env={"PYTHONPATH": trees[rev]})
                try:
                    assert daemon.process is not None
                    pid = daemon.process.pid
                    if args.lone:
                        send = lambda: bench.udp(62202, bench.spa_packet())  # noqa: E731
                        timed = bench.latency(send, bench.closer(daemon), args.lone)
                        lone[rev].append((float(timed["median"]), float(timed["p95"])))
                    cpu, before = usage(pid).cpu, granted(daemon, counter)
                    bench.flood(kind, count, rate or None).communicate()
                    made = granted(daemon, counter) - before
                    spent = usage(pid).cpu - cpu
                finally:
                    daemon.stop()
                    nft(bench.server.netns, "delete table inet sesame\n")
                taken[rev].append(1e6 * spent / max(1, made))
                alone = ""
                if args.lone:
                    median, p95 = lone[rev][-1]
                    alone = f" · lone SPA {median:.2f} / {p95:.2f} ms"
                print(
                    f"round {turn + 1}: {rev} {taken[rev][-1]:.1f} µs a {unit} ({made} {counter})"
                    + alone,
                    flush=True,
                )
        print(f"pace {pace()} ms")
        for rev, figures in taken.items():
            print(f"{rev}: {spread(figures):.1f} µs a {unit} ({len(figures)} rounds)")
            if args.lone:
                medians = spread([m for m, _ in lone[rev]])
                p95s = spread([p for _, p in lone[rev]])
                print(f"{rev}: lone SPA median {medians:.2f} ms, p95 {p95s:.2f} ms")
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
