"""The scaling section (``python -m bench --only scale``): how sesame's costs grow
with what it is configured for, in a lab of its own.

- sesame SPA with 1, 100 and 10,000 users: the daemon's CPU for each datagram it
  rejects (well formed, naming the users in turn, a wrong key; from distinct spoofed
  sources, so no per-source budget applies), knock → open latency, start-up time
  (process start to ready) and reload time (SIGHUP to reloaded). The CPU figure is the
  median of ROUNDS short floods, the user counts taking turns (a daemon started for
  each): this machine's pace drifts over minutes, and a comparison of figures taken
  minutes apart measured the drift as much as the users;
- fwknop's format with 1, 100 and 1,000 access.conf stanzas (SOURCE ANY): the same.
  Its datagrams name no user: each stanza's HMAC is tried in turn, so the cost of a
  rejected datagram grows with the stanzas a source may use;
- start-up with 100,000 live grants in the table to adopt (10,000 users): to ready
  (the daemon then adopts them while it serves), and to all adopted; then a reload.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench.flood import user_key
from bench.lab import (
    build,
    counters,
    fill_grants,
    flush_grants,
    latency,
    nft,
    settle,
    udp,
    usage,
    write,
)
from sesame.lab import DaemonProcess
from sesame.wire import fwknop, spa

B64 = base64.b64encode
USERS = (1, 100, 10_000)
STANZAS = (1, 100, 1_000)
GRANTS = 100_000
ROUNDS = 9
# Datagrams a second in the floods: clear of the sensor's FLOOD_RATE (10,000), above
# which the kernel batches what it delivers. A flood at that very rate had the daemon
# switch batching on and off as it went, and its cost a datagram moved by a third.
RATE = 20_000
HEAD = """\
[server]
state_dir = "{tmp}/state"
spa_rate = 1000000
spa_burst = 1000000
spa_source_rate = 1000
"""
DOOR = """
[[door]]
name = "spa"
spa_port = 62202
open = ["22/tcp"]
open_for = 3600
"""


def stanza_keys(i: int) -> tuple[bytes, bytes]:
    return user_key(i)[:16] * 2, user_key(-i - 1) * 2


def users_config(tmp: Path, n: int) -> str:
    users = "".join(
        f'[[user]]\nname = "u{i}"\nkey = "{B64(user_key(i)).decode()}"\ndoors = ["spa"]\n\n'
        for i in range(n)
    )
    return HEAD.format(tmp=tmp) + DOOR + "\n" + users


def stanzas_config(tmp: Path, n: int) -> str:
    out = [HEAD.format(tmp=tmp)]
    for i in range(n):
        key, mac = stanza_keys(i)
        out.append(
            f'\n[[fwknop]]\nname = "s{i}"\nsource = "ANY"\nopen_ports = "tcp/22"\n'
            f'key_base64 = "{B64(key).decode()}"\nhmac_key_base64 = "{B64(mac).decode()}"\n'
        )
    return "".join(out)


class Scale:
    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"sesame-bench-scale-{os.getpid()}"
        self.tmp.mkdir()
        self.topo = build(f"s{os.getpid() % 100000}")
        self.server, self.user = self.topo["server"], self.topo["user"]

    def close(self) -> None:
        self.topo.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def udp(self, port: int, payload: bytes) -> None:
        udp(self.user.netns, self.server.ipv4, port, payload)

    def reset(self) -> None:
        flush_grants(self.server.netns)

    def start(self, text: str) -> tuple[DaemonProcess, float]:
        """A daemon on ``text``: it, and the seconds from its start to ready."""
        config = write(self.tmp / "sesame.toml", text)
        begun = time.perf_counter()
        daemon = DaemonProcess(self.server.netns, config).start(timeout=120)
        return daemon, time.perf_counter() - begun

    def reload(self, daemon: DaemonProcess) -> float:
        mark, begun = daemon.mark(), time.perf_counter()
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("reloaded", 120, since=mark)
        return time.perf_counter() - begun

    def rejected(self, daemon: DaemonProcess, kind: str, key: str, count: int) -> float | None:
        """The daemon's CPU (µs) for each datagram of a flood it rejected for ``key``."""
        assert daemon.process is not None
        pid = daemon.process.pid
        before, cpu = counters(daemon).get(key, 0), usage(pid).cpu
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.flood",
                self.topo["flood"].netns,
                self.server.ipv4,
                kind,
                str(count),
                str(RATE),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=Path(__file__).parent.parent,
        )
        # With 1,000 stanzas a datagram costs milliseconds: a batch of the backlog the
        # flood left can hold up the daemon's answer for more than ten seconds.
        last, _ = settle(lambda: counters(daemon, 120).get(key, 0) - before, 0.5, 0.05)
        spent = usage(pid).cpu - cpu
        return round(spent / last * 1e6, 2) if last > 0 else None

    def measure(
        self, text: str, send: Callable[[], None], flood: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """Start-up, reload and latency on ``text``; with ``flood`` (its kind, and the
        counter of what it is rejected for), the CPU a rejected datagram too."""
        daemon, started = self.start(text)
        try:
            out = {
                "start_s": round(started, 3),
                "reload_s": round(self.reload(daemon), 3),
                "latency": latency(
                    self.user.netns, self.server.ipv4, send, self.reset, self.trials
                ),
            }
            if flood is not None:
                out["cpu_us_per_rejected"] = self.rejected(daemon, *flood, 30_000)
        finally:
            daemon.stop()
        return out

    def rejecting_users(self) -> dict[int, float | None]:
        """The CPU a rejected datagram at each user count: the median of ROUNDS floods
        of RATE for a second, the counts in turn (so each sees the machine's every
        moment), each to a daemon of its own started for it."""
        samples: dict[int, list[float]] = {n: [] for n in USERS}
        for _ in range(ROUNDS):
            for n in USERS:
                daemon, _ = self.start(users_config(self.tmp, n))
                try:
                    cost = self.rejected(daemon, f"sesame-wrong@{n}:62202", "dropped bad tag", RATE)
                finally:
                    daemon.stop()
                if cost is not None:
                    samples[n].append(cost)
        return {n: round(statistics.median(s), 2) if s else None for n, s in samples.items()}

    def users(self, n: int) -> dict[str, Any]:
        me = IPv4Address(self.user.ipv4)
        last = spa.cipher(user_key(n - 1))

        def send() -> None:
            payload = spa.encode(f"u{n - 1}", last, "spa", me, int(time.time()), os.urandom(12))
            self.udp(62202, payload)

        return self.measure(users_config(self.tmp, n), send)

    def stanzas(self, n: int) -> dict[str, Any]:
        key, mac = stanza_keys(n - 1)  # the last stanza: every other one is tried first

        def send() -> None:
            payload = fwknop.encode(
                "bench", f"{self.user.ipv4},tcp/22", key, mac, timestamp=int(time.time())
            )
            self.udp(62201, payload)

        return self.measure(
            stanzas_config(self.tmp, n), send, ("fwknop-wrong:62201", "dropped fwknop bad hmac")
        )

    def adopting(self) -> dict[str, Any]:
        """Start-up and reload with 10,000 users and 100,000 live grants to adopt."""
        text = users_config(self.tmp, max(USERS))
        daemon, _ = self.start(text)
        daemon.stop()  # its table stays: fill it with grants, as a daemon before it did
        fill_grants(self.server.netns, GRANTS, max(USERS))
        begun = time.perf_counter()
        daemon, started = self.start(text)
        try:
            # Ready, it adopts them while serving; reload once it holds them all.
            daemon.wait_for(rf"kept {GRANTS} grants", 120)
            adopted = time.perf_counter() - begun
            kept = len(daemon.lines)
            return {
                "grants": GRANTS,
                "start_s": round(started, 3),
                "adopted_s": round(adopted, 3),
                "reload_s": round(self.reload(daemon), 3),
                "log_lines": kept,
            }
        finally:
            daemon.stop()
            nft(self.server.netns, "delete table inet sesame\n")

    def run(self) -> dict[str, Any]:
        users = {str(n): self.users(n) for n in USERS}
        for n, cost in self.rejecting_users().items():
            users[str(n)]["cpu_us_per_rejected"] = cost
        return {
            "users": users,
            "stanzas": {str(n): self.stanzas(n) for n in STANZAS},
            "adopt": self.adopting(),
        }


def run(trials: int) -> dict[str, Any]:
    scale = Scale(trials)
    try:
        return scale.run()
    finally:
        scale.close()


def markdown(result: dict[str, Any], level: str = "##") -> list[str]:
    if not result:
        return []

    def lat(entry: dict[str, Any]) -> str:
        return f"{entry['median']} / {entry['p95']} ms" if entry.get("trials") else "-"

    lines = [
        "",
        f"{level} Scaling (CPU a rejected datagram: the daemon's own; latency median / p95)",
        "",
        "| configured | CPU µs a rejected datagram | knock → open | start-up | reload |",
        "|---|---|---|---|---|",
    ]
    for label, group in (("user{} (sesame SPA)", "users"), ("fwknop stanza{}", "stanzas")):
        for n, e in result[group].items():
            what = label.format("" if int(n) == 1 else "s")
            lines.append(
                f"| {int(n):,} {what} | {e['cpu_us_per_rejected']} | {lat(e['latency'])} |"
                f" {e['start_s']} s | {e['reload_s']} s |"
            )
    a = result["adopt"]
    adopted = f" (all adopted {a['adopted_s']} s)" if "adopted_s" in a else ""
    lines.append(
        f"| {max(USERS):,} users and {a['grants']:,} live grants to adopt | - | - |"
        f" {a['start_s']} s{adopted} | {a['reload_s']} s |"
    )
    return lines


def targets(result: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    if not result:
        return []
    u = result["users"]
    low, high = u[str(min(USERS))]["cpu_us_per_rejected"], u[str(max(USERS))]["cpu_us_per_rejected"]
    big, a = u[str(max(USERS))], result["adopt"]
    slowest = max(big["start_s"], big["reload_s"], a["start_s"], a["reload_s"])
    return [
        (
            f"sesame SPA: CPU a rejected datagram within 20% from 1 to {max(USERS):,} users",
            low is not None and high is not None and high <= low * 1.2,
            f"{low} µs and {high} µs",
        ),
        (
            f"start-up and reload under 2 s at {max(USERS):,} users and {GRANTS:,} grants",
            slowest < 2,
            f"start {big['start_s']} s, reload {big['reload_s']} s; with grants start"
            f" {a['start_s']} s (all adopted {a.get('adopted_s', '-')} s), reload"
            f" {a['reload_s']} s",
        ),
    ]
