"""Flame graphs of the daemon under load, the evidence behind each optimisation:

    .venv/bin/python -m bench.profile [NAME...]   # bench/results/flame-NAME.svg (py-spy)

It builds the lab, runs sesame, and records it with py-spy while floods of valid SPA,
junk SPA, wrongly keyed fwknop SPA and spoofed first knocks arrive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import FLOOD_USERS, SESAME_CONFIG
from bench.lab import build, write
from sesame.lab import DaemonProcess

RESULTS = Path(__file__).with_name("results")
RAW = ["--format", "raw"] if os.environ.get("SESAME_PROFILE_RAW") else []  # folded stacks
FLOODS = {  # name: (kind, count, packets a second or None: as fast as Python sends)
    "spa-valid": ("sesame-valid:62202", 60_000, None),
    "spa-junk": ("junk-udp:62202", 200_000, None),
    "first-knocks": ("first", 300_000, None),
    "fwknop-junk": ("fwknop-wrong:62201", 200_000, 20_000),  # as in the benchmark
}


def main() -> int:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="sesame-profile-"))
    topo = build("prof")
    try:
        config = write(tmp / "sesame.toml", SESAME_CONFIG.format(tmp=tmp, users=FLOOD_USERS))
        daemon = DaemonProcess(topo["server"].netns, config).start()
        assert daemon.process is not None
        only = sys.argv[1:] or list(FLOODS)
        for name, (kind, count, rate) in FLOODS.items():
            if name not in only:
                continue
            out = RESULTS / f"flame-{name}.svg"
            record = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(daemon.process.pid),
                    "--rate",
                    "500",
                    *RAW,
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.flood",
                    topo["flood"].netns,
                    topo["server"].ipv4,
                    kind,
                    str(count),
                    *([str(rate)] if rate else []),
                ],
                check=True,
                cwd=Path(__file__).parent.parent,
            )
            record.send_signal(2)
            record.wait(30)
            print(f"wrote {out}")
        daemon.stop()
    finally:
        topo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
