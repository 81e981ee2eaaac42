"""Flame graphs of the daemon under load, the evidence behind each optimisation:

    .venv/bin/python -m bench.profile     # writes bench/results/flame-*.svg (needs py-spy)

It builds the lab, runs sesame, and records it with py-spy while floods of valid SPA,
junk SPA and spoofed first knocks arrive.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import SESAME_CONFIG
from bench.lab import build, write
from sesame.lab import DaemonProcess

RESULTS = Path(__file__).with_name("results")
FLOODS = {
    "spa-valid": ("sesame-valid:62202", 60_000),
    "spa-junk": ("junk-udp:62202", 200_000),
    "first-knocks": ("first", 300_000),
}


def main() -> int:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="sesame-profile-"))
    topo = build("prof")
    try:
        config = write(tmp / "sesame.toml", SESAME_CONFIG.format(tmp=tmp))
        daemon = DaemonProcess(topo["server"].netns, config).start()
        assert daemon.process is not None
        for name, (kind, count) in FLOODS.items():
            out = RESULTS / f"flame-{name}.svg"
            record = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(daemon.process.pid),
                    "--rate",
                    "500",
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
