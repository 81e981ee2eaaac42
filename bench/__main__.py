"""The benchmark: sesame, Debian's knockd and Debian's fwknopd, measured in one run on
the same traffic in the same namespace lab. As root, after scripts/setup.sh:

    .venv/bin/python -m bench [--trials 100] [--docs]

Writes bench/results/latest.json and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import sesame
from bench.curve import curve
from bench.flood import USERS, user_key
from bench.lab import (
    Listener,
    build,
    counters,
    fill_grants,
    flush_grants,
    latency,
    machine_cpu,
    moved,
    named_counters,
    nft,
    pace,
    reset_hwm,
    run,
    sending,
    settle,
    stop,
    ticks,
    udp,
    usage,
    write,
)
from bench.runs import combine
from sesame import client
from sesame.basics import parse_port
from sesame.lab import DaemonProcess
from sesame.netns import inside
from sesame.wire import fwknop, spa

RESULTS = Path(__file__).with_name("results")
ROUNDS, SAMPLES = 10, 5  # the gate's sizes in turn, 10 times; 5 loops of 500 connections each
KEY = bytes(range(32))
FW_KEY = b"K" * 32
FW_HMAC = b"H" * 64
B64 = base64.b64encode
# fwknopd set to judge every datagram: all that waits (not 100 at most), every 10 ms
# (not 0.1 s), so what a datagram costs it can be measured; it does not spin.
EVERY_DATAGRAM = "PCAP_DISPATCH_COUNT 100000\nPCAP_LOOP_SLEEP 10000\n"
# Rounds of the fwknop-format CPU comparison, each a flood into no daemon, sesame and
# fwknopd judging every datagram, in turn.
TURNS = 5


SESAME_CONFIG = f"""\
[server]
state_dir = "{{tmp}}/state"
spa_rate = 50  # alice and the fwknop stanza send a trial every 0.1 s or so
spa_source_rate = 200  # ... back to back from one address, in the flood curve faster

[[user]]
name = "alice"
key = "{B64(KEY).decode()}"
doors = ["spa"]

{{users}}
[[door]]
name = "plain"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5
open = ["22/tcp"]

[[door]]
name = "spa"
spa_port = 62202
open = ["22/tcp"]

[[fwknop]]
name = "fwknop"
source = "ANY"
open_ports = "tcp/22"
key_base64 = "{B64(FW_KEY).decode()}"
hmac_key_base64 = "{B64(FW_HMAC).decode()}"
"""

# The valid SPA flood's users (bench.flood): each user's share of SPA is bounded.
FLOOD_USERS = "".join(
    f'[[user]]\nname = "u{i}"\nkey = "{B64(user_key(i)).decode()}"\ndoors = ["spa"]\n\n'
    for i in range(USERS)
)

KNOCKD_CONFIG = """\
[options]
    Interface = br0
[plain]
    sequence    = 7000,8000,9000:udp
    seq_timeout = 5
    tcpflags    = syn
    command     = /usr/sbin/nft add element inet peer allow {{ %IP% timeout 30s }}
"""

PEER_TABLE = """\
table inet peer {
  set allow { type ipv4_addr; flags timeout; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    tcp dport 22 ip saddr @allow accept
    tcp dport 22 drop
  }
}
"""


BASELINE = """\
table inet baseline {
  chain prerouting {
    type filter hook prerouting priority raw - 10; policy accept;
    ip saddr 100.64.0.0/10 drop
  }
}
"""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="sesame-bench-"))
        self.topo = build(f"b{os.getpid() % 100000}")
        self.server = self.topo["server"]
        self.user = self.topo["user"]
        self.flood_ns = self.topo["flood"].netns
        self.results: dict[str, object] = {}
        self.listener = Listener(self.server.netns)
        self.baselines: dict[tuple[str, int], float] = {}
        self.floods: list[subprocess.Popen] = []  # stopped on close, if still sending

    def close(self) -> None:
        for flood in self.floods:
            stop(flood)
        self.listener.close()
        self.topo.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- sends --------------------------------------------------------------------------

    def knock(self) -> None:
        with inside(self.user.netns):
            client.knock(
                2,
                self.server.ipv4,
                [parse_port(p) for p in ("7000/tcp", "8000/tcp", "9000/udp")],
            )

    def spa_packet(self) -> bytes:
        return spa.encode(
            "alice",
            spa.cipher(KEY),
            "spa",
            IPv4Address(self.user.ipv4),
            int(time.time()),
            os.urandom(12),
        )

    def fwknop_packet(self) -> bytes:
        return fwknop.encode(
            "alice", f"{self.user.ipv4},tcp/22", FW_KEY, FW_HMAC, timestamp=int(time.time())
        )

    def udp(self, port: int, payload: bytes) -> None:
        udp(self.user.netns, self.server.ipv4, port, payload)

    # -- latency --------------------------------------------------------------------------

    def latency(
        self, send: Callable[[], None], reset: Callable[[], None], trials: int
    ) -> dict[str, float | int]:
        def settle() -> None:
            reset()
            time.sleep(0.05)  # let the previous trial's packets drain (not a sync point)

        return latency(self.user.netns, self.server.ipv4, send, settle, trials)

    # -- floods ----------------------------------------------------------------------------

    def flood(
        self, kind: str, count: int, rate: float | None = -1.0, ready: bool = False
    ) -> subprocess.Popen:
        """A bounded flood from spoofed sources, at ``--flood-rate`` packets a second
        unless ``rate`` says (None: as fast as Python sends); with ``ready``, returns
        once its packets are made and it has begun to send (making them takes seconds)."""
        rate = self.args.flood_rate if rate == -1.0 else rate
        argv = [
            sys.executable,
            "-m",
            "bench.flood",
            self.flood_ns,
            self.server.ipv4,
            kind,
            str(count),
        ] + ([str(rate)] if rate else [])
        flood = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
            env=dict(os.environ, FLOOD_READY="1") if ready else None,
        )
        self.floods = [f for f in self.floods if f.poll() is None] + [flood]
        if ready:
            sending(flood, kind)
        return flood

    def during(
        self,
        pid: int,
        kind: str,
        count: int,
        send: Callable[[], None],
        reset: Callable[[], None],
        handled: Callable[[], int] | None = None,
        forget: Callable[[], None] | None = None,
    ) -> dict[str, object]:
        """Two floods of the same kind: over the first, the CPU and peak memory of
        ``pid`` and how many packets it handled (where it tells); during the second,
        legitimate knocks, and how fast they open. With ``forget`` (between trials, the
        daemon made to forget that the user's address opened), a third: the same
        knocks from an address that never opened."""
        out = self.flooded(pid, kind, count, self.baseline(kind, count), handled)
        # Long enough for every trial (about 0.1 s each), and stopped after them.
        trials = self.args.flood_trials
        longer = max(count, int(self.args.flood_rate * (trials * 0.2 + 2)))
        series = [("legit_during_flood", reset)]
        if forget is not None:
            series.append(("legit_during_flood_new", lambda: (reset(), forget())))
        for key, between in series:
            again = self.flood(kind, longer, ready=True)
            time.sleep(0.5)  # the flood is under way
            out[key] = self.latency(send, between, trials)
            lasted = again.poll() is None
            out["flood_lasted_the_trials"] = out.get("flood_lasted_the_trials", True) and lasted
            stop(again)
        return out

    def flooded(
        self,
        pid: int,
        kind: str,
        count: int,
        base: float,
        handled: Callable[[], int] | None = None,
    ) -> dict[str, object]:
        """One flood into the daemon ``pid``: its CPU and peak memory, the machine's CPU
        above ``base`` (the same flood dropped on arrival), and, where ``handled`` tells,
        what it handled (in all, and a second) and the CPU a datagram it handled."""
        reset_hwm(pid)
        seen = handled() if handled else 0
        before = usage(pid)
        elapsed, whole = self.measured(kind, count)
        after = usage(pid)
        cpu = after.cpu - before.cpu
        added = whole - base
        out: dict[str, object] = {
            "cpu_s": round(cpu, 6),
            "peak_rss_mb": round(after.hwm_kb / 1024, 1),
            "flood_s": round(elapsed, 2),
            "cpu_us_per_sent": round(cpu / count * 1e6, 2),
            "machine_cpu_s": round(whole, 3),
            "machine_added_us_per_sent": round(added / count * 1e6, 2),
        }
        if handled:
            n = handled() - seen
            out["handled"] = n
            out["handled_per_s"] = round(n / elapsed) if elapsed else 0
            out["cpu_us_per_packet"] = round(cpu / n * 1e6, 1) if n else None
            out["machine_added_us_per_packet"] = round(added / n * 1e6, 1) if n else None
        return out

    def measured(self, kind: str, count: int) -> tuple[float, float]:
        """Send a flood, then wait a second (for a daemon to work off its backlog): the
        seconds the sender took, and the whole machine's busy seconds from its first
        packet to then (not the sender making its packets: seconds of CPU for wrongly
        keyed fwknop datagrams, and noisier than what fwknopd adds)."""
        flood = self.flood(kind, count, ready=True)
        start = machine_cpu()
        elapsed = float(flood.communicate()[0].strip() or 0)
        time.sleep(1.0)
        return elapsed, machine_cpu() - start

    def baseline(self, kind: str, count: int) -> float:
        """The whole machine's CPU for the same flood into a server that drops it on
        arrival (before conntrack, no daemon): what sending and receiving it costs,
        so that what a daemon adds can be told apart (once a run, for each flood)."""
        if (kind, count) not in self.baselines:
            self.baselines[kind, count] = self.dropped(kind, count)
        return self.baselines[kind, count]

    def dropped(self, kind: str, count: int) -> float:
        """The whole machine's CPU for a flood that the server drops on arrival."""
        nft(self.server.netns, BASELINE)
        try:
            return self.measured(kind, count)[1]
        finally:
            nft(self.server.netns, "delete table inet baseline\n")

    def baselines_first(self) -> None:
        """Every flood's baseline, before any daemon runs (knockd's and fwknopd's
        capture sees packets before the server's firewall drops them)."""
        n = self.args.flood
        for kind, count in (
            ("syn", n),
            ("junk-udp:62202", n // 2),
            ("sesame-wrong:62202", n // 2),
            ("fwknop-wrong:62201", n // 2),
            ("junk-udp:62201", n // 2),
        ):
            self.baseline(kind, count)

    # -- subjects ----------------------------------------------------------------------------

    def closer(self, daemon: DaemonProcess) -> Callable[[], None]:
        """Between trials: take the grants away behind the daemon's back and, if the
        last trial made one, wait until the daemon has seen it go (it logs the grant as
        revoked and checks its table): that work is the reset's, not the next trial's."""
        since = daemon.mark()

        def reset() -> None:
            nonlocal since
            opened = any("opened door" in line for line in daemon.lines[since:])
            since = daemon.mark()
            flush_grants(self.server.netns)
            if opened:  # (a line logged late is waited for at the next reset, briefly)
                with contextlib.suppress(TimeoutError):
                    daemon.wait_for(r"closed door .*\(revoked\)", 2, since=since)

        return reset

    def sesame(self) -> None:
        config = write(
            self.tmp / "sesame.toml", SESAME_CONFIG.format(tmp=self.tmp, users=FLOOD_USERS)
        )
        daemon = DaemonProcess(self.server.netns, config).start()
        pid = daemon.process.pid
        reset = self.closer(daemon)
        out: dict[str, object] = {}
        try:
            trials = self.args.trials
            n = self.args.flood
            # First, while the daemon has nothing else to do (no grants to close later).
            out["syn_flood"] = self.during(pid, "syn", n, self.knock, reset)
            out["latency_plain"] = self.latency(self.knock, reset, trials)
            out["latency_spa"] = self.latency(
                lambda: self.udp(62202, self.spa_packet()), reset, trials
            )
            out["latency_fwknop_spa"] = self.latency(
                lambda: self.udp(62201, self.fwknop_packet()), reset, trials
            )
            out["spa_flood"] = self.during(
                pid,
                "junk-udp:62202",
                n // 2,
                lambda: self.udp(62202, self.spa_packet()),
                reset,
            )
            # Floods that reach sesame: also from an address that never opened, whose
            # SPA waits in turn with the flood's (known_log_group is not for it).
            forget = lambda: nft(self.server.netns, "flush set inet sesame known4\n")  # noqa: E731
            out["spa_flood_wrong_key"] = self.during(
                pid,
                "sesame-wrong:62202",
                n // 2,
                lambda: self.udp(62202, self.spa_packet()),
                reset,
                forget=forget,
            )
            out["fwknop_flood"] = self.during(
                pid,
                "fwknop-wrong:62201",
                n // 2,
                lambda: self.udp(62201, self.fwknop_packet()),
                reset,
                lambda: counters(daemon).get("dropped fwknop bad hmac", 0),
                forget=forget,
            )
            out["curve"] = curve(
                self.flood_ns,
                self.user.netns,
                self.server.ipv4,
                62202,
                self.args.curve_trials,
                lambda: self.udp(62202, self.spa_packet()),
                reset,
            )
            # Before the throughput floods: the grants they leave (10,000 to 12,000 for
            # the door's 30 s, as fast as this machine grants) counted in this memory.
            reset_hwm(pid)
            cpu = usage(pid).cpu
            flood = self.flood("first", self.args.sources, None)
            flood.communicate()
            time.sleep(1.0)
            out["spoofed_sources"] = {
                "sources": self.args.sources,
                "peak_rss_mb": round(usage(pid).hwm_kb / 1024, 1),
                "cpu_s": round(usage(pid).cpu - cpu, 3),
            }
            out["spa_throughput"] = self.throughput(daemon)
        finally:
            daemon.stop()
            nft(self.server.netns, "delete table inet sesame\n")
        self.results["sesame"] = out

    def throughput(self, daemon: DaemonProcess) -> dict[str, object]:
        out = {}
        for kind, key, n in (
            ("sesame-valid:62202", "spa accepted", 20_000),
            ("sesame-wrong:62202", None, 100_000),
        ):
            before, kernel = counters(daemon), named_counters(self.server.netns)
            mark = daemon.mark()
            sent = self.flood(kind, n, None).communicate()[0]
            start = time.perf_counter() - float(sent.strip() or 0)  # the first was sent then

            def total(key: str | None = key, before: dict[str, int] = before) -> int:
                now = counters(daemon)
                if key:
                    return now.get(key, 0) - before.get(key, 0)
                return sum(v - before.get(k, 0) for k, v in now.items() if k.startswith("dropped"))

            # Wait until the daemon's counters stop moving: then it has seen all it will.
            last, settled = settle(total, 0.5, 0.05)
            elapsed = settled - start
            label = "valid_granted" if key else "invalid_rejected"
            out[label] = {
                "sent": n,
                "handled": last,
                "per_second": round(last / elapsed),
                # Where the datagrams went: what the daemon counted, what the kernel did.
                "daemon": moved(before, counters(daemon)),
                "kernel": moved(kernel, named_counters(self.server.netns)),
                "log": [line for line in daemon.lines[mark:] if not _chatter(line)][:12],
            }
        flush_grants(self.server.netns)
        return out

    def knockd(self) -> None:
        knockd = shutil.which("knockd")
        if knockd is None:
            self.results["knockd"] = {"skipped": "knockd is not installed"}
            return
        nft(self.server.netns, PEER_TABLE)
        conf = write(self.tmp / "knockd.conf", KNOCKD_CONFIG)
        log = open(self.tmp / "knockd.out", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.server.netns,
                knockd,
                "-c",
                conf,
                "-v",
                "-p",
                str(self.tmp / "knockd.pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        reset = lambda: nft(self.server.netns, "flush set inet peer allow\n")  # noqa: E731
        out: dict[str, object] = {}
        try:
            deadline = time.monotonic() + 10
            while "listening" not in (self.tmp / "knockd.out").read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("knockd did not start")
                time.sleep(0.05)
            n = self.args.flood
            out["syn_flood"] = self.during(process.pid, "syn", n, self.knock, reset)
            out["latency_plain"] = self.latency(self.knock, reset, self.args.trials)
            reset_hwm(process.pid)
            cpu = usage(process.pid).cpu
            flood = self.flood("first", self.args.sources, None)
            flood.communicate()
            time.sleep(1.0)
            out["spoofed_sources"] = {
                "sources": self.args.sources,
                "peak_rss_mb": round(usage(process.pid).hwm_kb / 1024, 1),
                "cpu_s": round(usage(process.pid).cpu - cpu, 3),
            }
        finally:
            stop(process)
            log.close()
            nft(self.server.netns, "delete table inet peer\n")
        self.results["knockd"] = out

    def fwknopd(self) -> None:
        """Debian's fwknopd as installed (its defaults read at most PCAP_DISPATCH_COUNT
        100 datagrams, then sleep PCAP_LOOP_SLEEP 0.1 s), then set to judge every
        datagram (the CPU a datagram costs it, and its flood curve then)."""
        if shutil.which("fwknopd") is None or shutil.which("iptables") is None:
            self.results["fwknopd"] = {"skipped": "fwknopd or iptables is not installed"}
            return
        for key, conf in (("fwknopd", ""), ("fwknopd_every", EVERY_DATAGRAM)):
            out: dict[str, object] = {}
            with self.fwknopd_up(key, conf) as (pid, handled, reset):
                send = lambda: self.udp(62201, self.fwknop_packet())  # noqa: E731
                out["latency_fwknop_spa"] = self.latency(send, reset, self.args.trials)
                n = self.args.flood
                out["fwknop_flood"] = self.during(
                    pid, "fwknop-wrong:62201", n // 2, send, reset, handled
                )
                if not conf:
                    out["spa_flood"] = self.during(pid, "junk-udp:62201", n // 2, send, reset)
                # As installed, fwknopd loses most under a flood and each loss takes the
                # curve's second: fewer trials (the flood lasts them all).
                trials = self.args.curve_trials if conf else min(self.args.curve_trials, 20)
                out["curve"] = curve(
                    self.flood_ns, self.user.netns, self.server.ipv4, 62201, trials, send, reset
                )
            self.results[key] = out
        self.results["fwknop_turns"] = self.fwknop_turns()

    def fwknop_turns(self) -> dict[str, object]:
        """The machine's CPU a wrongly keyed fwknop-format datagram costs with sesame and
        with fwknopd set to judge every datagram, taken in turn: TURNS rounds, each a
        flood dropped on arrival (that round's baseline), then the same flood into sesame,
        then into fwknopd. Each daemon's figure is the median of its rounds. (This
        machine's pace moves by half within minutes: the two daemons' sections, minutes
        apart, compared the pace as much as the daemons.)"""
        kind, count = "fwknop-wrong:62201", self.args.flood // 2
        config = write(
            self.tmp / "turns.toml", SESAME_CONFIG.format(tmp=self.tmp, users=FLOOD_USERS)
        )
        rounds: dict[str, list[dict[str, Any]]] = {"sesame": [], "fwknopd_every": []}
        for turn in range(TURNS):
            base = self.dropped(kind, count)
            daemon = DaemonProcess(self.server.netns, config).start()
            try:
                handled = lambda d=daemon: counters(d).get("dropped fwknop bad hmac", 0)  # noqa: E731
                rounds["sesame"].append(
                    self.flooded(daemon.process.pid, kind, count, base, handled)
                )
            finally:
                daemon.stop()
                nft(self.server.netns, "delete table inet sesame\n")
            with self.fwknopd_up(f"fwknopd_turn{turn}", EVERY_DATAGRAM) as (pid, handled, _):
                rounds["fwknopd_every"].append(self.flooded(pid, kind, count, base, handled))
        out: dict[str, object] = {}
        for name, taken in rounds.items():
            figures: dict[str, object] = {"rounds": taken}
            for key in (
                "handled",
                "handled_per_s",
                "machine_added_us_per_packet",
                "cpu_us_per_packet",
            ):
                values = [r[key] for r in taken if r[key] is not None]
                figures[key] = statistics.median(values) if values else None
            out[name] = figures
        return out

    @contextlib.contextmanager
    def fwknopd_up(
        self, name: str, conf: str
    ) -> Iterator[tuple[int, Callable[[], int], Callable[[], None]]]:
        """fwknopd running with ``conf`` added to its configuration, port 22 closed but
        to what it opens: its pid, the datagrams it has judged, and the reset."""
        rundir = self.tmp / name
        rundir.mkdir()
        path = write(rundir / "fwknopd.conf", f"PCAP_INTF br0\nFWKNOP_RUN_DIR {rundir}\n{conf}")
        access = write(
            rundir / "access.conf",
            f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {B64(FW_KEY).decode()}\n"
            f"HMAC_KEY_BASE64 {B64(FW_HMAC).decode()}\n",
        )
        log = open(rundir / "out", "w")  # noqa: SIM115
        files = ["-c", str(path), "-a", str(access), "-i", "br0"]
        files += ["-d", str(rundir / "digest.cache"), "-p", str(rundir / "pid")]
        srv, program = self.server.netns, shutil.which("fwknopd") or "fwknopd"
        process = subprocess.Popen(
            ["ip", "netns", "exec", srv, program, "-f", *files],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def handled() -> int:
            return (rundir / "out").read_text().count("SPA Packet from IP")

        try:
            deadline = time.monotonic() + 15
            while "FWKNOP_INPUT" not in run(srv, "iptables", "-S", check=False):
                if time.monotonic() > deadline:
                    raise RuntimeError("fwknopd did not start: " + (rundir / "out").read_text())
                time.sleep(0.05)
            run(srv, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP")
            yield (
                process.pid,
                handled,
                lambda: run(srv, "iptables", "-F", "FWKNOP_INPUT", check=False),
            )
        finally:
            stop(process)
            log.close()
            run(srv, "iptables", "-F", check=False)

    # -- the gate at scale -------------------------------------------------------------------

    def connects(self, n: int) -> float:
        """Mean seconds per new connection to the guarded port (sequential; the sockets
        are made beforehand, in one visit to the namespace). Each ends with a reset,
        not in TIME_WAIT: thousands of those make the client's own connect() slower
        and slower as it looks for a free port, whatever the gate holds."""
        with inside(self.user.netns):
            socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        start = time.perf_counter()
        for sock in socks:
            sock.settimeout(2)
            sock.connect((self.server.ipv4, 22))
            sock.close()
        return (time.perf_counter() - start) / n

    def throughput_mb_s(self, megabytes: int = 64) -> float:
        """MB/s of one TCP stream to the guarded port (the allowed traffic a grant lets
        through: every data packet passes the input hook)."""
        chunk = bytes(1 << 20)
        with inside(self.user.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(120)
            sock.connect((self.server.ipv4, 22))
            start = time.perf_counter()
            for _ in range(megabytes):
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)  # the server closes once it has read everything
            return megabytes / (time.perf_counter() - start)

    def grants(self, size: int) -> None:
        """Fill sesame's grant set with ``size`` elements and the user's."""
        fill_grants(self.server.netns, size, also=[self.user.ipv4])

    def gate_scale(self) -> None:
        srv, sizes = self.server.netns, self.args.grants
        config = write(
            self.tmp / "gate.toml", SESAME_CONFIG.format(tmp=self.tmp, users=FLOOD_USERS)
        )
        daemon = DaemonProcess(srv, config).start()
        daemon.stop()  # the table stays; the gate is all kernel
        # The sizes in turn, ROUNDS times over (this shared machine's pace drifts: each
        # size sees every moment of it), SAMPLES short samples each time; the fastest
        # kept, as a sample a busy moment slowed says nothing of the gate.
        fastest = {size: float("inf") for size in sizes}
        for _ in range(ROUNDS):
            for size in sizes:
                self.grants(size)
                fastest[size] = min(fastest[size], *(self.connects(500) for _ in range(SAMPLES)))
        out: dict[str, object] = {}
        for size in sizes:
            self.grants(size)
            out[str(size)] = {
                "sesame_us_per_connection": round(fastest[size] * 1e6, 1),
                "sesame_mb_s": round(max(self.throughput_mb_s() for _ in range(2))),
            }
        run(srv, "nft", "delete", "table", "inet", "sesame")
        for size in sizes:
            rules = [
                "*filter",
                ":SESAME_BENCH - [0:0]",
                "-A INPUT -p tcp --dport 22 -j SESAME_BENCH",
            ]
            rules += [
                f"-A SESAME_BENCH -s 100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}"
                " -p tcp --dport 22 -j ACCEPT"
                for i in range(size)
            ]
            rules += [
                f"-A SESAME_BENCH -s {self.user.ipv4} -p tcp --dport 22 -j ACCEPT",
                "-A SESAME_BENCH -j DROP",
                "COMMIT",
                "",
            ]
            subprocess.run(
                ["ip", "netns", "exec", srv, "iptables-restore"],
                input="\n".join(rules),
                text=True,
                check=True,
            )
            figures = out[str(size)]
            assert isinstance(figures, dict)
            iptables_us = min(self.connects(500) for _ in range(5)) * 1e6  # (no target)
            figures["iptables_chain_us_per_connection"] = round(iptables_us, 1)
            figures["iptables_chain_mb_s"] = round(max(self.throughput_mb_s() for _ in range(2)))
            run(srv, "iptables", "-F")
            run(srv, "iptables", "-X", "SESAME_BENCH")
        self.results["gate_scale"] = out


def _cluster(self: Bench) -> None:
    """The cluster section (bench.cluster), in a lab of its own."""
    from bench import cluster

    self.results["cluster"] = cluster.run(self.args.trials)


Bench.cluster = _cluster  # type: ignore[attr-defined]


def _scale(self: Bench) -> None:
    """The scaling section (bench.scale), in a lab of its own."""
    from bench import scale

    self.results["scale"] = scale.run(self.args.trials)


Bench.scale = _scale  # type: ignore[attr-defined]


def machine() -> dict[str, str]:
    def version(argv: list[str]) -> str:
        try:
            text = subprocess.run(argv, capture_output=True, text=True, check=False)
            return (text.stdout or text.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "not installed"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "nft": version(["nft", "--version"]),
        "knockd": version(["knockd", "-V"]),
        "fwknopd": version(["fwknopd", "--version"]),
        "sesame": version([sys.executable, "-m", "sesame", "--version"]),
    }


def one_run(args: argparse.Namespace, number: int) -> dict[str, object]:
    """One run of the sections asked for, in a lab of its own."""
    bench = Bench(args)
    steal, every = ticks()
    paced = pace()
    try:
        if {"sesame", "knockd", "fwknopd"} & set(args.only):
            print(f"== run {number + 1} of {args.runs}: baselines", flush=True)
            bench.baselines_first()
        for name, step in (
            ("sesame", bench.sesame),
            ("knockd", bench.knockd),
            ("fwknopd", bench.fwknopd),
            ("gate", bench.gate_scale),
            ("cluster", bench.cluster),
            ("scale", bench.scale),
        ):
            if name in args.only:
                print(f"== run {number + 1} of {args.runs}: {name}", flush=True)
                step()
                print(
                    json.dumps(
                        bench.results.get(name if name != "gate" else "gate_scale"), indent=1
                    ),
                    flush=True,
                )
    finally:
        bench.close()
    now_steal, now_every = ticks()
    bench.results["pace"] = {  # how fast the machine was at the start and the end
        "start_ms": paced,
        "end_ms": pace(),
        "steal_pct": round(100 * (now_steal - steal) / max(1, now_every - every), 2),
    }
    return bench.results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs of every measurement: figures are their medians with the spread,"
        " and a target is met only if it holds in every run (default 3)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=100,
        help="knocks for each latency figure (default 100: a p95 of 50 is the third"
        " slowest, one hiccup of this machine away from another figure)",
    )
    parser.add_argument("--flood", type=int, default=200_000)
    parser.add_argument(
        "--curve-trials",
        type=int,
        default=100,
        help="legitimate SPA datagrams at each rate of the flood curve (default 100)",
    )
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=20_000,
        help="packets a second in the floods (default 20000)",
    )
    parser.add_argument(
        "--flood-trials",
        type=int,
        default=100,
        help="legitimate knocks during each flood (default 100)",
    )
    parser.add_argument("--sources", type=int, default=1_000_000)
    parser.add_argument("--grants", type=int, nargs="*", default=[0, 10_000, 100_000])
    parser.add_argument(
        "--from",
        dest="source",
        metavar="JSON",
        help="measure nothing: write the tables of the runs a report saved"
        " (bench/results/latest.json)",
    )
    parser.add_argument(
        "--docs",
        "--readme",
        dest="docs",
        action="store_true",
        help="also put the tables into docs/benchmark.md, and the targets, the flood curve"
        " and the scaling table into README.md (between their bench markers)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=["sesame", "knockd", "fwknopd", "gate", "cluster", "scale"],
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the benchmark needs root (namespaces, nftables)", file=sys.stderr)
        return 1
    if args.source:  # the tables again, from the runs a report saved
        report = json.loads(Path(args.source).read_text())
        report["results"] = combine(report["runs"])
    else:
        # Byte-compiled, as an installed package is: else each daemon started compiles
        # sesame anew where nothing may write it (PYTHONDONTWRITEBYTECODE), a tenth of
        # a second and more of every start-up.
        compileall.compile_dir(Path(sesame.__file__).parent, quiet=1)
        # Stopped (SIGTERM, SIGHUP): unwind as after Ctrl-C, so that the daemons are
        # stopped and the namespaces deleted (each section's finally).
        for stopping in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stopping, _stopped)
        runs = [one_run(args, i) for i in range(args.runs)]
        report = {"machine": machine(), "args": vars(args), "runs": runs}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
        report["results"] = combine(runs)
    from bench.report import markdown

    (RESULTS / "latest.md").write_text(markdown(report))
    if args.docs:
        from bench.report import DOCS, README, summary, write_between

        tables = markdown(report, title=False, level="###")
        write_between(DOCS / "benchmark.md", "bench", tables)
        write_between(README, "bench", summary(report))
    print((RESULTS / "latest.md").read_text())
    return 0


def _chatter(line: str) -> bool:
    """A daemon's log line about one datagram or grant, or its counters."""
    return any(word in line for word in (" opened", "refused", "closed", "revoked", "counters:"))


def _stopped(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    threading.excepthook = lambda a: None
    sys.exit(main())
