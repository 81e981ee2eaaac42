"""The benchmark lab's parts: namespaces, the peers' daemons, packet floods, probes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from bench.craft import fold, sum16
from bench.guard import calibrate
from sesame.basics import Port
from sesame.firewall.elements import set_of
from sesame.firewall.watch import SHARDS, grant_set
from sesame.lab import DaemonProcess
from sesame.netns import Topology, inside

GUARDED = 22


SSH = Port("tcp", 22)
GRANTS4 = [grant_set("4", shard) for shard in range(SHARDS)]


def sysctl(netns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings], check=True)


def nft(netns: str, script: str) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return result.stdout


def named_counters(netns: str, table: str = "inet sesame") -> dict[str, int]:
    """The packets each named counter of ``table`` has counted."""
    listed = json.loads(run(netns, "nft", "-j", "list", "counters", "table", *table.split()))
    return {
        item["counter"]["name"]: item["counter"]["packets"]
        for item in listed["nftables"]
        if "counter" in item
    }


def fill_grants(netns: str, size: int, users: int = 0, also: Sequence[str] = ()) -> None:
    """sesame's grant set holds ``size`` live grants to port 22 (an hour left) from
    spoofed addresses, and those of the addresses ``also``; with ``users``, each noted as
    a grant of users u0 to u``users - 1`` in turn, as a daemon before this one left them."""
    spoofed = [
        (IPv4Address(f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}"), i) for i in range(size)
    ]
    by_set: dict[str, list[str]] = {}
    for address, i in [*spoofed, *((IPv4Address(a), -1) for a in also)]:
        note = f' comment "spa u{i % users}"' if users and i >= 0 else ""
        name = set_of(address, SSH)  # each in its shard's set, as sesame puts it
        by_set.setdefault(name or "", []).append(f"{address} . tcp . 22 timeout 1h{note}")
    lines = [f"flush set inet sesame {name}" for name in GRANTS4]
    for name, elements in by_set.items():
        for first in range(0, len(elements), 5000):
            chunk = ", ".join(elements[first : first + 5000])
            lines.append(f"add element inet sesame {name} {{ {chunk} }}")
    nft(netns, "\n".join(lines) + "\n")


def flush_grants(netns: str) -> None:
    """Empty sesame's IPv4 grant sets (every shard)."""
    nft(netns, "".join(f"flush set inet sesame {name}\n" for name in GRANTS4))


def run(netns: str, *argv: str, check: bool = True) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
    )
    if check and result.returncode:
        raise RuntimeError(f"{argv}: {result.stderr}")
    return result.stdout


def build(tag: str) -> Topology:
    topo = Topology(tag=tag, clients=("user", "flood")).build()
    server = topo["server"].netns
    # Spoofed sources have no route back: take them anyway, as an exposed host must.
    sysctl(
        server,
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.conf.br0.rp_filter=0",
    )
    return topo


@dataclass
class Usage:
    cpu: float  # seconds, user + system
    hwm_kb: int  # peak resident set


def usage(pid: int) -> Usage:
    """CPU time of all the process's threads (schedstat: nanoseconds) and peak RSS."""
    cpu = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
            cpu += int(handle.read().split()[0]) / 1e9
    hwm = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return Usage(cpu, hwm)


def sending(flood: subprocess.Popen, what: str) -> None:
    """Wait until a flood started with FLOOD_READY has made its packets and sends."""
    if flood.stdout is None or flood.stdout.readline().strip() != "sending":
        raise RuntimeError(f"the {what} flood did not start")


def machine_cpu() -> float:
    """Seconds the whole machine's CPUs were busy, kernel time and interrupts included,
    whichever task they ran in: every CPU's time since boot less what /proc/stat counts
    as idle, waiting for the disk, or steal (the time the hypervisor gave to other
    machines). Idle is clocked exactly when a CPU stops and starts; user and system are
    sampled at the timer tick, and on this project's virtual machines the tick misses:
    their sum read 36% of a core while the daemon and the sender ran at 94%."""
    with open("/proc/uptime") as handle:
        up = float(handle.readline().split()[0])
    fields = _cpu_ticks()
    idle, iowait, steal = fields[3], fields[4], fields[7]
    cpus = os.sysconf("SC_NPROCESSORS_ONLN")
    return up * cpus - (idle + iowait + steal) / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> list[int]:
    """/proc/stat's first line: user, nice, system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as handle:
        return [int(x) for x in handle.readline().split()[1:9]]


def ticks() -> tuple[int, int]:
    """(steal, all) of the machine's CPU time since boot, in ticks."""
    fields = _cpu_ticks()
    return fields[7], sum(fields)


def pace(rounds: int = 15) -> float:
    """How fast this machine runs Python now: the median milliseconds of a fixed loop
    (the regression guard's calibration), in this process."""
    times = []
    for _ in range(rounds):
        begun = time.perf_counter()
        calibrate()
        times.append((time.perf_counter() - begun) * 1000)
    return round(statistics.median(times), 2)


def reset_hwm(pid: int) -> None:
    """Start the peak-RSS mark afresh (clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


# -- probing the guarded port ------------------------------------------------------------


class Prober:
    """Connection attempts to the guarded port from a namespace, one every ``every``
    seconds, until one is answered. The sockets are made beforehand, in one visit to the
    namespace: entering a network namespace costs about a millisecond."""

    def __init__(self, netns: str, address: str, port: int = GUARDED, pool: int = 400) -> None:
        self.netns, self.target = netns, (address, port)
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.spare = self._make(pool)

    def _make(self, n: int) -> list[socket.socket]:
        with inside(self.netns):
            made = [socket.socket(self.family, socket.SOCK_STREAM) for _ in range(n)]
        for sock in made:
            sock.setblocking(False)
        return made

    def wait(self, every: float = 0.00025, limit: float = 3.0) -> float | None:
        """When (perf_counter) an attempt was answered, or None after ``limit``. Attempts
        older than 5 ms are dropped: their one SYN went unanswered (the answer takes
        tens of microseconds here), and fewer sockets to watch keep the prober light."""
        pending: list[tuple[socket.socket, float]] = []
        end = time.perf_counter() + limit
        try:
            while (now := time.perf_counter()) < end:
                if not self.spare:
                    self.spare = self._make(100)
                sock = self.spare.pop()
                sock.connect_ex(self.target)
                pending.append((sock, now))
                _, ready, _ = select.select([], [s for s, _ in pending], [], every)
                for s in ready:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        return time.perf_counter()
                while pending and now - pending[0][1] > 0.005:
                    pending.pop(0)[0].close()
            return None
        finally:
            for sock, _ in pending:
                sock.close()
            for sock in self.spare:
                sock.close()
            self.spare = []


def udp(netns: str, address: str, port: int, payload: bytes) -> None:
    """One UDP datagram from ``netns`` to ``address``:``port``."""
    with inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.sendto(payload, (address, port))


def counters(daemon: DaemonProcess, timeout: float = 10.0) -> dict[str, int]:
    """A daemon's counters, as it logs them on SIGUSR1 (at its next turn of the loop:
    one with a backlog answers when it ends a batch, ``timeout`` at most)."""
    mark = daemon.mark()
    daemon.signal(signal.SIGUSR1)
    line = daemon.wait_for(r"counters: (.*)", timeout, since=mark).group(1)
    return {k.strip(): int(v) for k, v in re.findall(r"([a-z ]+)=(\d+)", line)}


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counts that rose from ``before`` to ``after``, by how much."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def settle(read: Callable[[], int], quiet: float, every: float) -> tuple[int, float]:
    """Read a count every ``every`` seconds until it has not moved for ``quiet``: its
    last value, and when (perf_counter) it last moved."""
    last, moved = -1, time.perf_counter()
    while True:
        now = read()
        if now != last:
            last, moved = now, time.perf_counter()
        elif time.perf_counter() - moved > quiet:
            return last, moved
        time.sleep(every)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float], failures: int) -> dict[str, float | int]:
    ms = [s * 1000 for s in samples]
    if not ms:
        return {"trials": 0, "failures": failures}
    return {
        "trials": len(ms),
        "failures": failures,
        "min": round(min(ms), 2),
        "median": round(statistics.median(ms), 2),
        "p95": round(percentile(ms, 0.95), 2),
        "max": round(max(ms), 2),
    }


def latency(
    netns: str,
    address: str,
    send: Callable[[], None],
    reset: Callable[[], None],
    trials: int,
    limit: float = 3.0,
) -> dict[str, float | int]:
    """``trials`` times: ``reset``, ``send``, and how long until ``address``'s guarded
    port answers a connection from ``netns`` (a failure after ``limit`` seconds). The
    sending and probing run first in line (:func:`first_in_line`)."""
    samples, failures = [], 0
    for _ in range(trials):
        reset()
        prober = Prober(netns, address)
        with first_in_line():
            send()
            start = time.perf_counter()
            done = prober.wait(limit=limit)
        if done is None:
            failures += 1
        else:
            samples.append(done - start)
    reset()
    return summary(samples, failures)


@contextlib.contextmanager
def first_in_line() -> Iterator[None]:
    """The calling thread at real-time priority (SCHED_FIFO 1) for the block, as a
    latency instrument runs: a probe's answer came within 0.2 ms of the probe, yet
    knocks timed during floods read 4 to 7 ms, because the prober itself had waited 4
    to 5 ms for a CPU the flood's sender and the daemon held. It sleeps between probes,
    so it takes little from them. Without the right to, the block runs as it is."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


class Listener:
    """The service on the guarded port in the server namespace (:mod:`bench.sink`, its
    own process): accepts every connection and reads it until the client closes."""

    def __init__(self, netns: str, port: int = GUARDED) -> None:
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "bench.sink", str(port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the sink on the guarded port did not start")

    def close(self) -> None:
        stop(self.process)


# -- raw packets ---------------------------------------------------------------------------


class Raw:
    """Sends hand-made IPv4 packets with any source address, from a namespace."""

    def __init__(self, netns: str | None, destination: str) -> None:
        """``netns`` None: only to make packets (bench.judging), never to send them."""
        if netns is not None:
            with inside(netns):
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.dst = socket.inet_aton(destination)
        self.destination = destination

    def syn(self, source: int, sport: int, dport: int) -> bytes:
        src = source.to_bytes(4, "big")
        tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)
        pseudo = src + self.dst + struct.pack("!BBH", 0, 6, 20)
        tcp = tcp[:16] + struct.pack("!H", fold(sum16(pseudo + tcp))) + tcp[18:]
        return self._ip(src, 6, tcp)

    def udp(self, source: int, sport: int, dport: int, payload: bytes) -> bytes:
        src = source.to_bytes(4, "big")
        length = 8 + len(payload)
        head = struct.pack("!HHHH", sport, dport, length, 0)
        pseudo = src + self.dst + struct.pack("!BBH", 0, 17, length)
        check = fold(sum16(pseudo + head + payload)) or 0xFFFF
        return self._ip(src, 17, head[:6] + struct.pack("!H", check) + payload)

    def _ip(self, src: bytes, proto: int, body: bytes) -> bytes:
        return (
            struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0, src, self.dst)
            + body
        )

    def send(
        self, packets: list[bytes] | Batch, rate: float | None = None, total: int = 0
    ) -> float:
        """Send packets (at most ``rate`` per second; ``total``: that many, the list
        over and over); returns the seconds it took. They go PACE at a time in one
        sendmmsg(2): a sendto() a packet kept one sender under 120,000 a second here,
        short of the flood curve's 100,000 each once the machine is busy."""
        batch = packets if isinstance(packets, Batch) else self.batch(packets)
        start = time.perf_counter()
        n, total = batch.count, total or batch.count
        for first in range(0, total, PACE):
            if rate:
                ahead = start + first / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            # What the kernel did not take (a full buffer: the rest of that call) is
            # not sent again: a flood.
            at, left = first % n, min(PACE, total - first)
            while left:  # at the list's end, on from its start
                count = min(left, n - at)
                batch.send(at, count)
                at, left = 0, left - count
        return time.perf_counter() - start

    def batch(self, packets: list[bytes]) -> Batch:
        """``packets`` made ready to send (a second for 100,000: before a flood starts)."""
        return Batch(self.sock, packets, self.destination)

    def close(self) -> None:
        self.sock.close()


PACE = 16  # a flood's packets in one system call, and how finely its rate is kept
_IOVEC = struct.Struct("@PN")  # struct iovec
_MMSGHDR = struct.Struct("@PIPNPNi4xI4x")  # struct mmsghdr: a msghdr, then the bytes sent
_sendmmsg = ctypes.CDLL(None, use_errno=True).sendmmsg


class Batch:
    """Packets laid out once for sendmmsg(2) on a raw socket, to one destination."""

    def __init__(self, sock: socket.socket, packets: list[bytes], destination: str) -> None:
        self.fd, self.count = sock.fileno(), len(packets)
        name = struct.pack("=H2x4s8x", socket.AF_INET, socket.inet_aton(destination))
        self.name = ctypes.create_string_buffer(name, len(name))
        self.data = ctypes.create_string_buffer(b"".join(packets))
        self.iovecs = ctypes.create_string_buffer(_IOVEC.size * self.count)
        self.headers = ctypes.create_string_buffer(_MMSGHDR.size * self.count)
        address = ctypes.addressof(self.name)
        data, iovec = ctypes.addressof(self.data), ctypes.addressof(self.iovecs)
        for i, packet in enumerate(packets):
            _IOVEC.pack_into(self.iovecs, i * _IOVEC.size, data, len(packet))
            header = (address, len(name), iovec, 1, 0, 0, 0, 0)  # one iovec, no control
            _MMSGHDR.pack_into(self.headers, i * _MMSGHDR.size, *header)
            data, iovec = data + len(packet), iovec + _IOVEC.size
        self.base = ctypes.addressof(self.headers)

    def send(self, first: int, count: int) -> int:
        """Send packets ``first`` to ``first + count - 1``; how many the kernel took."""
        return int(_sendmmsg(self.fd, ctypes.c_void_p(self.base + first * _MMSGHDR.size), count, 0))


def spoofed(n: int, seed: int) -> list[int]:
    """n distinct addresses in 100.64.0.0/10 (shared address space; never routed here)."""
    rng = random.Random(seed)
    base = 100 << 24 | 64 << 16
    return [base + i for i in rng.sample(range(1, 1 << 22), n)]


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    path.chmod(mode)
    return str(path)
