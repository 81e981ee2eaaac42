"""What sesame's table costs the kernel a datagram that its SPA rules pass on, and what
of that is the per-source budget, with no daemon (run as root; a lab of its own):

    python -m bench.rules [ROUNDS]     # default 5

The table as the daemon installs it for the benchmark's config (the daemon started,
then stopped: the table stays; with nobody bound to its NFLOG group, the kernel logs
nothing), the same table with the budget's sets as they were before ae4e56b (65,536
sources, each kept a minute), and without the per-source budget's rules, take turns: in each
round, the benchmark's wrongly keyed fwknop-format flood (100,000 datagrams at 20,000 a
second, from a pool of spoofed sources) dropped on arrival (the round's baseline), then
into each table. For each table, the machine's CPU a datagram above the baseline: the
median of the rounds, with the least and the most in brackets. (Taken in turn: this machine's pace
moves by half within minutes.)
"""

from __future__ import annotations

import argparse
import re
import sys

from bench.__main__ import FLOOD_USERS, SESAME_CONFIG, Bench
from bench.lab import nft, run, write
from bench.runs import spread
from sesame.lab import DaemonProcess

KIND, COUNT, RATE = "fwknop-wrong:62201", 100_000, 20_000.0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules", description=__doc__)
    parser.add_argument("rounds", type=int, nargs="?", default=5)
    rounds = parser.parse_args().rounds
    args = argparse.Namespace(flood=2 * COUNT, flood_rate=RATE, trials=5, runs=1)
    bench = Bench(args)
    netns = bench.server.netns
    added: dict[str, list[float]] = {"table": [], "budget as before": [], "without the budget": []}
    try:
        config = write(
            bench.tmp / "rules.toml", SESAME_CONFIG.format(tmp=bench.tmp, users=FLOOD_USERS)
        )
        for turn in range(rounds):
            base = bench.dropped(KIND, COUNT)
            names = list(added) if turn % 2 == 0 else list(added)[::-1]
            for name in names:
                DaemonProcess(netns, config).start().stop()  # the table stays
                try:
                    if name == "budget as before":
                        for n, addr in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
                            nft(
                                netns,
                                f"add set inet sesame spa_sources{n} {{ type {addr};"
                                " flags dynamic, timeout; size 65536; timeout 60s; }\n",
                            )
                        listing = run(netns, "nft", "list", "set", "inet", "sesame", "spa_sources4")
                        assert "size 65536" in listing and "timeout 1m" in listing, listing
                    elif name != "table":
                        listing = run(
                            netns, "nft", "-a", "list", "chain", "inet", "sesame", "spa_known"
                        )
                        for handle in re.findall(r"@spa_sources.* # handle (\d+)", listing):
                            nft(netns, f"delete rule inet sesame spa_known handle {handle}\n")
                    whole = bench.measured(KIND, COUNT)[1]
                finally:
                    nft(netns, "delete table inet sesame\n")
                added[name].append((whole - base) / COUNT * 1e6)
                print(f"round {turn + 1}: {name}: {added[name][-1]:.2f} µs", flush=True)
    finally:
        bench.close()
    for name, figures in added.items():
        print(f"{name}: {spread(figures):.2f} µs a datagram over the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
