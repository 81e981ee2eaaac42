"""The benchmark's cluster section (``python -m bench --only cluster``): Debian's
redis-server on the lab's hub, sesame nodes a and c beside it, a user.

- SPA at node a to open a cluster door on node c: the time from the datagram to c's
  guarded port answering (median and p95), beside a's own;
- cluster SPA throughput: a flood of valid datagrams (distinct sources and users) to
  a, each one claimed in the store and told to c: granted a second;
- the shared window's cost: daemon CPU a valid datagram with ``[cluster]`` (each
  claimed in the store) against the same node without it (its own window alone);
- a local door's knock latency with the store up and with the store stopped.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench import lab
from bench.flood import USERS, user_key
from bench.lab import Listener, settle, stop, sysctl, udp, usage, write
from sesame import client
from sesame.basics import Port, parse_port
from sesame.cli import common
from sesame.firewall.elements import set_of
from sesame.lab import DaemonProcess
from sesame.netns import Topology, inside
from sesame.wire import spa

KEY = bytes(range(32))
OFFERED = 10_000  # valid SPA datagrams a second in the throughput and cost floods
PASSWORD = "bench-store-password"
B64 = base64.b64encode
USERS_TOML = "".join(
    f'[[user]]\nname = "u{i}"\nkey = "{B64(user_key(i)).decode()}"\ndoors = ["spa"]\n\n'
    for i in range(USERS)
)
CONFIG = """\
[server]
state_dir = "{tmp}/state-{node}"
spa_rate = 1000000
spa_burst = 1000000
{cluster}
[[user]]
name = "alice"
key = "{alice}"
doors = ["spa"]

{users}
[[door]]
name = "spa"
spa_port = 62202
open = ["22/tcp"]
open_for = 60
{scope}
[[door]]
name = "plain"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5
open = ["22/tcp"]
"""
CLUSTER = """
[cluster]
store = "redis://sesame@{store}:6379/0"
password_file = "{tmp}/password"
key_file = "{tmp}/cluster.key"
node = "{node}"
"""
REDIS = """\
bind {address}
port 6379
save ""
appendonly no
dir {dir}
user default off
user sesame on >{password} ~sesame:* resetchannels -@all {commands}
"""
COMMANDS = (  # what sesame asks of its store (README's ACL)
    "+ping +client|setname +evalsha +script|load +get +set +xadd +xread +xrevrange +zadd"
    " +zrangebyscore"
    " +zremrangebyscore +scan"
)


class ClusterBench:
    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"sesame-bench-cluster-{os.getpid()}"
        self.tmp.mkdir()
        self.topo = Topology(tag=f"k{os.getpid() % 100000}", clients=("user", "flood", "a", "c"))
        self.topo.build()
        for node in ("a", "c"):  # spoofed sources have no route back: take them anyway
            sysctl(self.topo[node].netns, "net.ipv4.conf.all.rp_filter=0")
            sysctl(self.topo[node].netns, "net.ipv4.conf.eth0.rp_filter=0")
        write(self.tmp / "password", PASSWORD + "\n")
        write(self.tmp / "cluster.key", B64(os.urandom(32)).decode() + "\n")
        self.listeners = [Listener(self.topo[n].netns) for n in ("a", "c")]
        self.store: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, DaemonProcess] = {}

    def close(self) -> None:
        for daemon in self.nodes.values():
            daemon.stop()
        if self.store is not None:
            stop(self.store)
        for listener in self.listeners:
            listener.close()
        self.topo.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- parts -------------------------------------------------------------------------

    def start_store(self) -> None:
        server = self.topo["server"]
        conf = write(
            self.tmp / "redis.conf",
            REDIS.format(address=server.ipv4, dir=self.tmp, password=PASSWORD, commands=COMMANDS),
        )
        self.store = subprocess.Popen(
            ["ip", "netns", "exec", server.netns, shutil.which("redis-server") or "", conf],
            stdout=subprocess.DEVNULL,
        )

    def stop_store(self) -> None:
        assert self.store is not None
        stop(self.store)
        self.store = None

    def start(self, node: str, cluster: bool = True, scope: str = "cluster") -> DaemonProcess:
        old = self.nodes.pop(node, None)
        if old is not None:
            old.stop()
        text = CONFIG.format(
            tmp=self.tmp,
            node=node,
            alice=B64(KEY).decode(),
            users=USERS_TOML,
            scope=f'scope = "{scope}"\n' if cluster else "",
            cluster=CLUSTER.format(store=self.topo["server"].ipv4, tmp=self.tmp, node=node)
            if cluster
            else "",
        )
        config = write(self.tmp / f"sesame-{node}.toml", text)
        control = str(self.tmp / f"control-{node}")
        daemon = DaemonProcess(self.topo[node].netns, config, serve=("--control", control))
        self.nodes[node] = daemon.start()
        if cluster:
            daemon.wait_for(r"cluster store \S+ answers", 30)
        return daemon

    def ask(self, node: str, *args: str) -> str:
        """``sesame ARGS`` of a node's control socket."""
        control = str(self.tmp / f"control-{node}")
        argv = [sys.executable, "-m", "sesame", *args, "--control", control]
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def counters(self, node: str) -> dict[str, int]:
        """A node's counters, asked on its control socket from here (milliseconds)."""
        answer = common.ask(str(self.tmp / f"control-{node}"), {"command": "counters"})
        return dict((answer or {}).get("counters", {}))

    def revoke(self, node: str, who: str) -> None:
        self.ask(node, "revoke", who)

    def empty(self, node: str, limit: float = 5.0) -> None:
        """Wait until a node holds no grant for the user."""
        end = time.monotonic() + limit
        user = self.topo["user"].ipv4
        home = set_of(IPv4Address(user), Port("tcp", 22))  # the user's shard of the grants
        while time.monotonic() < end:
            listed = lab.run(self.topo[node].netns, "nft", "list", "set", "inet", "sesame", home)
            if user + " " not in listed:
                return
            time.sleep(0.02)

    def datagram(self) -> bytes:
        user = IPv4Address(self.topo["user"].ipv4)
        return spa.encode("alice", spa.cipher(KEY), "spa", user, int(time.time()), os.urandom(12))

    def send(self, node: str, payload: bytes) -> None:
        udp(self.topo["user"].netns, self.topo[node].ipv4, 62202, payload)

    def latency(self, send: Callable[[], None], at: str, reset: Callable[[], None]) -> dict:
        return lab.latency(self.topo["user"].netns, self.topo[at].ipv4, send, reset, self.trials)

    # -- measurements ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.start_store()
        for node in ("a", "c"):
            self.start(node)
        user = self.topo["user"].ipv4

        def reset() -> None:
            self.revoke("a", user)
            self.empty("a")
            self.empty("c")

        for at in ("a", "c"):
            out[f"spa_at_a_open_at_{at}"] = self.latency(
                lambda: self.send("a", self.datagram()), at, reset
            )
        out["knock_store_up"] = self.latency(self.knock, "a", lambda: self.revoke("a", user))
        self.stop_store()
        self.nodes["a"].wait_for("does not answer", 30)
        out["knock_store_stopped"] = self.latency(self.knock, "a", lambda: self.revoke("a", user))
        mark = {node: daemon.mark() for node, daemon in self.nodes.items()}
        self.start_store()  # empty: the nodes refuse what was stamped before they knew
        for node, daemon in self.nodes.items():
            daemon.wait_for("lost what it held", 30, since=mark[node])
            daemon.wait_for("following its entries", 30, since=mark[node])
        time.sleep(1.1)  # the floods' datagrams are stamped in a later second
        out["throughput"] = self.throughput()
        self.nodes.pop("c").stop()  # the same flood with a alone on the machine's cores
        out["throughput_alone"] = self.throughput(at_c=False)
        out["cost"] = self.cost()
        return out

    def knock(self) -> None:
        with inside(self.topo["user"].netns):
            ports = [parse_port(p) for p in ("7000/tcp", "8000/tcp", "9000/udp")]
            client.knock(2, self.topo["a"].ipv4, ports)

    def flood(self, node: str, count: int) -> float:
        """Valid SPA datagrams from distinct sources and users, ``OFFERED`` a second
        (twice the target: more than a node takes, without the sender taking a core the
        nodes share); returns when (perf_counter) the first was sent (they are made
        before)."""
        where = [self.topo["flood"].netns, self.topo[node].ipv4]
        kind = "sesame-valid:62202"
        sent = subprocess.run(
            [sys.executable, "-m", "bench.flood", *where, kind, str(count), str(OFFERED)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        return time.perf_counter() - float(sent.stdout.strip())

    def settled(self, node: str, key: str, before: int, start: float) -> tuple[int, float]:
        """Wait until a node's counter stops moving: (its rise, seconds from ``start``
        to the last rise, seen within 10 ms)."""
        last, when = settle(lambda: self.counters(node).get(key, 0) - before, 1.0, 0.01)
        return last, when - start

    def throughput(self, count: int = 20_000, at_c: bool = True) -> dict[str, Any]:
        """Valid SPA to a cluster door at a: granted (claimed, told) a second, and
        how many of them c opened (``at_c``: c runs)."""
        told = self.counters("a").get("cluster entries told", 0)
        applied = self.counters("c").get("cluster entries applied", 0) if at_c else 0
        start = self.flood("a", count)
        granted, seconds = self.settled("a", "cluster entries told", told, start)
        at_c_opened = self.settled("c", "cluster entries applied", applied, start)[0] if at_c else 0
        return {
            "sent": count,
            "granted": granted,
            "per_second": round(granted / seconds) if seconds else 0,
            "opened_at_c": at_c_opened,
        }

    def cost(self, count: int = 20_000) -> dict[str, Any]:
        """Daemon CPU a valid datagram: a's own window alone, then claimed in the store
        (a door of a's own: the claim alone, no entry told)."""
        out = {}
        for label, cluster in (("local", False), ("shared", True)):
            daemon = self.start("a", cluster=cluster, scope="local")
            assert daemon.process is not None
            key = "spa accepted"
            before, cpu = self.counters("a").get(key, 0), usage(daemon.process.pid).cpu
            start = self.flood("a", count)
            accepted, _ = self.settled("a", key, before, start)
            spent = usage(daemon.process.pid).cpu - cpu
            out[label] = {
                "accepted": accepted,
                "cpu_us_per_datagram": round(spent / accepted * 1e6, 1) if accepted else None,
            }
        self.start("a")
        return out


def run(trials: int) -> dict[str, Any]:
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    bench = ClusterBench(trials)
    try:
        return bench.run()
    finally:
        bench.close()


def markdown(result: dict[str, Any], level: str = "##") -> list[str]:
    """The section's table (empty when it did not run)."""
    if not result or "skipped" in result:
        return []

    def lat(entry: dict[str, Any]) -> str:
        if not entry.get("trials"):
            return "-"
        failed = f", {entry['failures']} failed" if entry.get("failures") else ""
        return f"median {entry['median']} ms, p95 {entry['p95']} ms{failed}"

    t, c, alone = result["throughput"], result["cost"], result["throughput_alone"]
    return [
        "",
        f"{level} Cluster (Redis on the lab's hub, nodes a and c)",
        "",
        "| measurement | figure |",
        "|---|---|",
        f"| SPA at a, open at a | {lat(result['spa_at_a_open_at_a'])} |",
        f"| SPA at a, open at c | {lat(result['spa_at_a_open_at_c'])} |",
        f"| cluster SPA granted a second (at a; opened at c) | {t['per_second']:,}/s"
        f" ({t['granted']:,} of {t['sent']:,}; {t['opened_at_c']:,} at c) |",
        f"| the same, c stopped (a alone on the machine's two cores) | {alone['per_second']:,}/s"
        f" ({alone['granted']:,} of {alone['sent']:,}) |",
        f"| CPU a valid datagram, own window alone | {c['local']['cpu_us_per_datagram']} µs |",
        f"| CPU a valid datagram, claimed in the store | {c['shared']['cpu_us_per_datagram']} µs |",
        f"| plain knock at a, store up | {lat(result['knock_store_up'])} |",
        f"| plain knock at a, store stopped | {lat(result['knock_store_stopped'])} |",
    ]


def targets(result: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    if not result or "skipped" in result:
        return []
    c_open = result["spa_at_a_open_at_c"]
    up, down = result["knock_store_up"], result["knock_store_stopped"]
    rate = result["throughput"]["per_second"]
    same = (
        not down.get("failures")
        and down.get("median") is not None
        and down["median"] <= up["median"] * 1.5 + 0.2
    )
    return [
        (
            "cluster: SPA at a opens at c, p95 under 5 ms",
            bool(c_open.get("trials")) and not c_open.get("failures") and c_open["p95"] < 5,
            f"p95 {c_open.get('p95')} ms",
        ),
        ("cluster: at least 5,000 SPA granted a second", rate >= 5_000, f"{rate:,}/s"),
        (
            "cluster: a local door's knock latency unchanged with the store stopped",
            same,
            f"median {up.get('median')} ms up, {down.get('median')} ms stopped",
        ),
    ]
