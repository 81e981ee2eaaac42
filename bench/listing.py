"""How long the daemon's start-up listing of the grant sets takes, by their size (run as
root; a lab of its own):

    python -m bench.listing [SIZE ...]     # default: 25000 50000 100000

For each size: the grant set filled with that many live grants, then the kernel's dump
of the grant sets read and sorted by source as the daemon does before it is ready
(``NftGate.listed``), three times; the fastest is printed. The kernel hands a dump on
32 KiB at a time and walks the set from its start for each part, so this grows faster
than the set.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.lab import build, fill_grants, write
from bench.scale import users_config
from sesame.firewall import NftGate
from sesame.lab import DaemonProcess
from sesame.netns import inside


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (namespaces, nftables)", file=sys.stderr)
        return 1
    sizes = [int(a) for a in sys.argv[1:]] or [25_000, 50_000, 100_000]
    tmp = Path(tempfile.mkdtemp(prefix="sesame-listing-"))
    topo = build(f"l{os.getpid() % 100000}")
    try:
        netns = topo["server"].netns
        daemon = DaemonProcess(netns, write(tmp / "sesame.toml", users_config(tmp, 100))).start()
        daemon.stop()  # the table stays
        with inside(netns):
            gate = NftGate("sesame")
            gate.netlink  # noqa: B018 - its socket made here, in the server's namespace
        for size in sizes:
            fill_grants(netns, size, 100)
            best = float("inf")
            for _ in range(3):
                begun = time.perf_counter()
                listed = gate.listed()
                best = min(best, time.perf_counter() - begun)
            print(f"{size:>8,} grants: listed in {best:.3f} s ({listed.left:,} by source)")
    finally:
        topo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
