"""The reliability lab: a server, a user, a stranger and a flood host in namespaces,
sesame serving every kind of door, and what each part of the suite records."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from pathlib import Path

from bench.lab import nft, run, sysctl
from sesame import client
from sesame.firewall.watch import GRANT_SHARDS
from sesame.lab import DaemonProcess, EchoServer, knock_from
from sesame.netns import Host, Topology, inside

ALICE = bytes(range(32))
BOB = bytes(range(1, 33))
FW_KEY, FW_HMAC = b"K" * 32, b"H" * 64
B64 = base64.b64encode
OPEN_FOR = 30
SPA_PORT, FWKNOP_PORT = 62201, 62202
# What the scans cover: every knock port, the one-time range, both SPA ports.
SCANNED = "1-10000,39990-41010,62190-62210"

SESAME = f"""\
[server]
state_dir = "{{state}}"

[[user]]
name = "alice"
key = "{B64(ALICE).decode()}"
doors = ["spa", "phone"]

[[user]]
name = "bob"
key = "{B64(BOB).decode()}"
doors = ["spa"]

[[door]]
name = "plain"
sequence = ["7000/tcp", "8000/tcp", "9000/tcp"]
seq_timeout = 5
open = ["22/tcp"]
open_for = {OPEN_FOR}

[[door]]
name = "udp"
sequence = ["7100/udp", "7200/udp", "7300/udp"]
seq_timeout = 5
open = ["22/tcp"]
open_for = {OPEN_FOR}

[[door]]
name = "spa"
spa_port = {SPA_PORT}
open = ["22/tcp"]
open_for = {OPEN_FOR}

[[door]]
name = "phone"
sequence_from = "totp"
port_range = [40000, 40999]
seq_timeout = 10
open = ["22/tcp"]
open_for = {OPEN_FOR}

[[fwknop]]
name = "fwknop"
spa_port = {FWKNOP_PORT}
source = "ANY"
open_ports = "tcp/22"
key_base64 = "{B64(FW_KEY).decode()}"
hmac_key_base64 = "{B64(FW_HMAC).decode()}"
"""

KNOCKD = """\
[options]
    Interface = br0

[any]
    sequence    = 7000,8000,9000
    seq_timeout = 5
    command     = /bin/true %IP%

[udp]
    sequence    = 7100:udp,7200:udp,7300:udp
    seq_timeout = 5
    command     = /bin/true %IP%

[fin]
    sequence    = 7400,7500,7600
    seq_timeout = 5
    tcpflags    = fin
    command     = /bin/true %IP%
"""


@dataclass
class Row:
    """One line of the suite's table: what was thrown, how much, what held."""

    section: str
    attack: str
    amount: str
    held: str
    ok: bool
    figures: dict[str, object] = field(default_factory=dict)


class Lab:
    """The namespaces, an echo service on the guarded port, and sesame."""

    def __init__(self, short: bool) -> None:
        self.short = short
        self.topo = Topology(tag=f"rel{os.getpid()}", clients=("user", "stranger", "flood"))
        self.topo.build()
        self.server, self.user = self.topo["server"], self.topo["user"]
        self.stranger, self.flood = self.topo["stranger"], self.topo["flood"]
        sysctl(self.server.netns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.br0.rp_filter=0")
        self.tmp = Path(tempfile.mkdtemp(prefix="sesame-reliability-"))
        self.echo = EchoServer(self.server.netns, 22)
        self.daemon: DaemonProcess | None = None
        self.rows: list[Row] = []
        link = json.loads(run(self.server.netns, "ip", "-j", "link", "show", "br0"))
        self.server_mac = link[0]["address"]

    # -- sesame --------------------------------------------------------------------------

    def state(self) -> Path:
        return self.tmp / "state"

    def start(
        self,
        text: str | None = None,
        *,
        knockd: bool = False,
        env: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> DaemonProcess:
        """Start sesame afresh; the kernel's own state (scanners, first knocks) is
        emptied, so what one part of the suite did does not carry into the next."""
        self.stop()
        name = "knockd.conf" if knockd else "sesame.toml"
        path = self.tmp / name
        path.write_text(text if text is not None else SESAME.format(state=self.state()))
        path.chmod(0o600)
        extra = ("-v",) if verbose else ()
        self.daemon = DaemonProcess(
            self.server.netns,
            str(path),
            *extra,
            source="--knockd-conf" if knockd else "-c",
        ).start(env=env)
        self.forget_scanners()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    @property
    def pid(self) -> int:
        assert self.daemon is not None and self.daemon.process is not None
        return self.daemon.process.pid

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.process.poll() is None  # type: ignore[union-attr]

    def counters(self) -> dict[str, int]:
        """The daemon's counters, as it logs them on SIGUSR1."""
        assert self.daemon is not None
        mark = self.daemon.mark()
        self.daemon.signal(signal.SIGUSR1)
        line = self.daemon.wait_for(r"counters: (.*)$", 10, since=mark).group(1)
        return {k.strip(): int(v) for k, v in re.findall(r"([^=,]+?)=(\d+)", line)}

    def rss_mb(self) -> float:
        return _status(self.pid, "VmRSS") / 1024

    def peak_mb(self) -> float:
        return _status(self.pid, "VmHWM") / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    # -- the kernel ------------------------------------------------------------------------

    def nft(self, *args: str) -> str:
        return run(self.server.netns, "nft", *args)

    def elements(self, name: str) -> int:
        text = self.nft("list", "set", "inet", "sesame", name)
        return len(re.findall(r"expires", text))

    def grants(self) -> dict[str, float]:
        """Live grant elements ``ADDR PROTO PORT`` -> seconds left."""
        out: dict[str, float] = {}
        for name in GRANT_SHARDS:
            text = self.nft("list", "set", "inet", "sesame", name)
            for m in re.finditer(r"([0-9a-f:.]+) \. (tcp|udp) \. (\d+) [^,}]*?expires (\S+)", text):
                out[f"{m.group(1)} {m.group(2)} {m.group(3)}"] = _duration(m.group(4))
        return out

    def forget_scanners(self) -> None:
        """Empty the kernel's own state (scanners, first knocks, followed sources): the
        next scan starts from a clean source. sesame ignores such changes."""
        script = "".join(
            f"flush {kind} inet sesame {name}\n"
            for kind, name in (
                *(("set", n) for n in ("noisy4", "noisy6", "follow4", "follow6")),
                *(("map", n) for n in ("hits4", "hits6")),
            )
        )
        nft(self.server.netns, script)

    # -- clients ---------------------------------------------------------------------------

    def knock(self, netns: str | None = None, ipv6: bool = False, timeout: float = 10.0) -> float:
        """A plain knock from the user (or ``netns``); seconds until sesame opened."""
        assert self.daemon is not None
        host = self.topo["user"] if netns is None else _host(self.topo, netns)
        server = self.server.ipv6 if ipv6 else self.server.ipv4
        address = host.ipv6 if ipv6 else host.ipv4
        mark = self.daemon.mark()
        started = time.monotonic()
        knock_from(host.netns, server, "7000/tcp", "8000/tcp", "9000/tcp")
        pattern = rf"(opened door plain to|refreshed door plain for) {re.escape(address)}:"
        self.daemon.wait_for(pattern, timeout, since=mark)
        return time.monotonic() - started

    def spa(
        self, user: str = "alice", netns: str | None = None, stamp: float | None = None
    ) -> None:
        """Send one SPA datagram of ``user`` from the user (or ``netns``)."""
        host = self.topo["user"] if netns is None else _host(self.topo, netns)
        key = ALICE if user == "alice" else BOB
        payload = client.spa_packet(user, key, "spa", ip_address(host.ipv4), stamp)
        udp(host.netns, self.server.ipv4, SPA_PORT, payload)

    def scan(self, *args: str, ipv6: bool = False, ports: str = SCANNED) -> None:
        """An nmap scan of the server from the stranger, fast, without retries."""
        target = self.server.ipv6 if ipv6 else self.server.ipv4
        argv = ["nmap", "-n", "-Pn", "--max-retries", "0", "--min-rate", "20000", *args]
        run(self.stranger.netns, *argv, "-p", ports, *(["-6"] if ipv6 else []), target)

    def settled(self) -> None:
        """Everything sent before has been handled: the user's marker knock (the first
        two ports of the plain door) reached sesame. Needs -v."""
        assert self.daemon is not None
        mark = self.daemon.mark()
        knock_from(self.user.netns, self.server.ipv4, "7000/tcp", "8000/tcp")
        self.daemon.wait_for(rf"knock from {self.user.ipv4} to 8000/tcp$", 20, since=mark)

    def opened_for(self, address: str, since: int = 0) -> int:
        """How many doors opened to ``address`` (knockd's doors name no ports)."""
        assert self.daemon is not None
        opened = re.compile(rf"opened door \S+ to {re.escape(address)}(:|$| \()")
        return sum(bool(opened.search(line)) for line in self.daemon.lines[since:])

    def close(self) -> None:
        self.stop()
        self.echo.close()
        self.topo.close()
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        mark = "held" if row.ok else "FAILED"
        print(f"  [{mark}] {row.section}: {row.attack} ({row.amount}): {row.held}", flush=True)
        self.save()

    def save(self) -> None:
        (self.tmp / "rows.json").write_text(json.dumps([asdict(r) for r in self.rows]))


def udp(netns: str, address: str, port: int, payload: bytes) -> None:
    """One datagram from ``netns`` (sesame's own SPA sender, inside that namespace)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with inside(netns):
        client.send_spa(family, address, port, payload)


def _host(topo: Topology, netns: str) -> Host:
    return next(h for h in topo.hosts.values() if h.netns == netns)


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _duration(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|d|h|m|s)", text):
        total += int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total
