"""sesame as a service: what it tells systemd, from the real daemon in a lab."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import time
from pathlib import Path

from sesame.lab import DaemonProcess
from tests.helpers.lab import CONFIG


def test_the_daemon_tells_systemd_ready_reloading_watchdog_and_stopping(lab):
    """READY only once the table is installed, RELOADING then READY around SIGHUP
    (also when the new config is refused: the old one serves), WATCHDOG at half the
    interval asked for, STOPPING on SIGTERM."""
    path = os.path.join(lab.tmp, "notify")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(path)
    systemd.settimeout(10.0)

    def next_message() -> dict[str, str]:
        data = systemd.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def until(key: str) -> tuple[dict[str, str], float]:
        while True:
            message = next_message()
            if key in message:
                return message, time.monotonic()

    config = lab.write_config(CONFIG.format(seq_timeout=5, open_for=30))
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    daemon = lab.daemon = DaemonProcess(lab.server.netns, config).start(ready=False, env=env)
    with systemd:
        ready, _ = until("READY")
        assert ready["STATUS"] == "0 live grants, 0 knocks seen, 0 SPA accepted"
        assert "chain knock" in lab.nft("list", "table", "inet", "sesame")  # the gate exists
        pings = [until("WATCHDOG")[1] for _ in range(4)]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        # every second, never later than systemd would restart it (2 s)
        assert all(0.5 < gap < 2.0 for gap in gaps), gaps
        daemon.signal(signal.SIGHUP)
        assert until("RELOADING")[0]["MONOTONIC_USEC"].isdigit()
        assert until("READY")[0]["READY"] == "1"
        with open(config, "a") as handle:
            handle.write("bogus = 1\n")
        mark = daemon.mark()
        daemon.signal(signal.SIGHUP)
        until("RELOADING")
        until("READY")
        daemon.wait_for("reload refused, the running config stays", 10, since=mark)
        daemon.signal(signal.SIGTERM)
        until("STOPPING")
    assert daemon.stop() == 0


UNIT = "packaging/systemd/sesame.service"


def test_the_shipped_unit_is_valid_and_rated_1_5_or_lower(tmp_path):
    """systemd's own verdicts on the unit: it verifies (with /usr/bin/sesame pointing at
    this checkout's sesame), and its exposure is 1.5 or lower."""
    import re
    import shutil
    import subprocess

    from tests.helpers.lab import require

    analyze = require("systemd-analyze")
    sesame = shutil.which("sesame") or os.path.join(os.path.dirname(sys.executable), "sesame")
    unit = tmp_path / "sesame.service"
    unit.write_text(Path(UNIT).read_text().replace("/usr/bin/sesame", sesame))
    verified = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    rated = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=15", UNIT],
        capture_output=True,
        text=True,
    )
    assert rated.returncode == 0, rated.stdout[-2000:]
    level = re.search(r"Overall exposure level for sesame.service: (\d+\.\d+)", rated.stdout)
    assert level is not None and float(level.group(1)) <= 1.5, rated.stdout[-500:]
