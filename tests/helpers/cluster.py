"""A cluster in namespaces: Debian's redis-server (an ACL user with a password, no
persistence) on the link's hub, three sesame nodes (a, b, c), a user and a stranger,
all on one link (198.51.100.0/24)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sesame.crypto import encode_key
from sesame.lab import DaemonProcess, EchoServer
from sesame.netns import Topology, inside
from tests.helpers.lab import grants as grants_in
from tests.helpers.lab import require
from tests.helpers.lab import run as run_in
from tests.helpers.spa import ALICE, BOB

NODES = ("a", "b", "c")
PASSWORD = "correct-horse-battery-staple-42"
CLUSTER_KEY = encode_key(bytes(range(100, 132)))
REDIS_CONF = """\
bind {address}
port 6379
daemonize no
save ""
appendonly no
dir {dir}
user default off
user sesame on >{password} ~sesame:* resetchannels -@all {commands}
"""
# What sesame asks of its store, and no more: the ACL README recommends.
COMMANDS = (
    "+ping +client|setname +evalsha +script|load +get +set +xadd +xread +xrevrange +zadd"
    " +zrangebyscore +zremrangebyscore +scan"
)
CONFIG = """\
[server]
state_dir = "{tmp}/state-{node}"

[cluster]
store = "redis://sesame@{store}:6379/0"
password_file = "{tmp}/password"
key_file = "{tmp}/cluster.key"
node = "{node}"

[[user]]
name = "alice"
key = "{alice}"
doors = ["ssh", "web", "phone"]

[[user]]
name = "bob"
key = "{bob}"
doors = ["ssh"]

[[door]]
name = "ssh"
spa_port = 62201
open = ["22/tcp"]
open_for = {open_for}
scope = "cluster"
one_address_per_user = true

[[door]]
name = "web"
spa_port = 62202
open = ["8080/tcp"]
open_for = {open_for}

[[door]]
name = "phone"
sequence_from = "totp"
port_range = [40000, 40999]
seq_timeout = 10
open = ["2222/tcp"]
open_for = {open_for}

[[door]]
name = "plain"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5
open = ["2223/tcp"]
open_for = {open_for}

[[fwknop]]
name = "office"
spa_port = 62203
source = "ANY"
open_ports = "tcp/8081"
key_base64 = "{fw_key}"
hmac_key_base64 = "{fw_hmac}"
fw_access_timeout = {open_for}
"""
FW_KEY = b"K" * 32
FW_HMAC = b"H" * 64


@dataclass
class Cluster:
    topo: Topology
    tmp: Path
    open_for: int
    nodes: dict[str, DaemonProcess] = field(default_factory=dict)
    store: subprocess.Popen[bytes] | None = None
    echoes: list[EchoServer] = field(default_factory=list)

    @property
    def user(self):
        return self.topo["user"]

    @property
    def stranger(self):
        return self.topo["stranger"]

    def address(self, node: str) -> str:
        return self.topo[node].ipv4

    def config(self, node: str) -> str:
        return str(self.tmp / f"sesame-{node}.toml")

    def control(self, node: str) -> str:
        return str(self.tmp / f"control-{node}")

    # -- the store -------------------------------------------------------------------

    def start_store(self) -> None:
        server = require("redis-server")
        conf = self.tmp / "redis.conf"
        conf.write_text(
            REDIS_CONF.format(
                address=self.topo["server"].ipv4, dir=self.tmp, password=PASSWORD, commands=COMMANDS
            )
        )
        self.store = subprocess.Popen(
            ["ip", "netns", "exec", self.topo["server"].netns, server, str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.redis().ping()
                return
            except Exception:
                if time.monotonic() > deadline or self.store.poll() is not None:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)

    def stop_store(self, how: int = signal.SIGTERM) -> None:
        assert self.store is not None
        self.store.send_signal(how)
        self.store.wait(20)
        self.store = None

    def redis(self) -> Any:
        """A client of the store, as the test's own (its socket made in the hub)."""
        import redis

        with inside(self.topo["server"].netns):  # it connects here, and its socket stays
            return redis.Redis(
                host=self.topo["server"].ipv4,
                username="sesame",
                password=PASSWORD,
                socket_timeout=2,
                single_connection_client=True,
                protocol=2,
            )

    # -- the nodes -------------------------------------------------------------------

    def start(self, node: str, ready: bool = True) -> DaemonProcess:
        text = CONFIG.format(
            tmp=self.tmp,
            node=node,
            store=self.topo["server"].ipv4,
            alice=ALICE,
            bob=BOB,
            open_for=self.open_for,
            fw_key=base64.b64encode(FW_KEY).decode(),
            fw_hmac=base64.b64encode(FW_HMAC).decode(),
        )
        Path(self.config(node)).write_text(text)
        os.chmod(self.config(node), 0o600)
        daemon = DaemonProcess(
            self.topo[node].netns, self.config(node), "-v", serve=("--control", self.control(node))
        )
        self.nodes[node] = daemon.start()
        if ready:
            daemon.wait_for(r"cluster store \S+ answers", 20)
            daemon.wait_for(r"cluster store \S+: following its entries", 20)
        return daemon

    def run(self, netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return run_in(netns, *argv)

    def stop(self, node: str) -> None:
        self.nodes.pop(node).stop()

    def sesame(self) -> list[str]:
        return [sys.executable, "-m", "sesame"]

    def counters(self, node: str) -> dict[str, int]:
        out = subprocess.run(
            [sys.executable, "-m", "sesame", "counters", "--json", "--control", self.control(node)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)

    def grants(self, node: str) -> dict[str, float]:
        """Live grant elements ``ADDRESS PORT/PROTO`` -> seconds left, in a node's kernel."""
        return grants_in(self.topo[node].netns)

    def close(self) -> None:
        for daemon in self.nodes.values():
            daemon.stop()
        if self.store is not None and self.store.poll() is None:
            self.stop_store(signal.SIGKILL)
        for echo in self.echoes:
            echo.close()
        self.topo.close()


@contextmanager
def cluster(tmp: Path, tag: str, open_for: int = 6) -> Iterator[Cluster]:
    """The store and three nodes, started; all of it stopped and deleted after."""
    topo = Topology(tag=tag, clients=("user", "stranger", *NODES)).build()
    lab = Cluster(topo, tmp, open_for)
    try:
        (tmp / "password").write_text(PASSWORD + "\n")
        (tmp / "cluster.key").write_text(CLUSTER_KEY + "\n")
        for name in ("password", "cluster.key"):
            os.chmod(tmp / name, 0o600)
        lab.start_store()
        for node in NODES:
            lab.echoes.append(EchoServer(topo[node].netns, 22))
            lab.start(node)
        yield lab
    finally:
        lab.close()


@contextmanager
def loopback_redis(tmp: Path) -> Iterator[str]:
    """redis-server on a free port of 127.0.0.1 (the ACL user, no persistence): its URL."""
    import socket

    server = require("redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp / "loopback.conf"
    conf.write_text(
        REDIS_CONF.format(
            address="127.0.0.1", dir=tmp, password=PASSWORD, commands=COMMANDS
        ).replace("port 6379", f"port {port}")
    )
    process = subprocess.Popen([server, str(conf)], stdout=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port, username="sesame", password=PASSWORD, protocol=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "no redis"
                time.sleep(0.05)
        client.close()
        yield f"redis://sesame@127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
