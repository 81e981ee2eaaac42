"""A cluster of three nodes on a real Redis (Debian's redis-server, an ACL user with
a password): one authorization opens a cluster door everywhere, a replay opens
nothing anywhere, and the store can fail without opening anything it should not."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sesame.client import one_time_sequence
from sesame.cluster.settings import Cluster
from sesame.cluster.store import RedisStore
from sesame.crypto import decode_key
from sesame.lab import knock_from
from sesame.testing import check_store
from sesame.wire import fwknop
from tests.helpers.cluster import FW_HMAC, FW_KEY, NODES, PASSWORD, cluster, loopback_redis
from tests.helpers.spa import ALICE, BOB, send
from tests.kernel.test_spa import forge

_count = itertools.count()


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root")
    with cluster(tmp_path, f"c{os.getpid() % 100000}x{next(_count)}") as the_lab:
        yield the_lab


def test_redis_keeps_the_store_promises(tmp_path):
    """The same checks the memory store passes (sesame.testing.check_store)."""
    names = (f"node{n}" for n in itertools.count())
    with loopback_redis(tmp_path) as url:
        settings = Cluster(url, bytes(32), PASSWORD, "sesame", "check")
        check_store(lambda: RedisStore(replace(settings, node=next(names))))


def spa(lab, door: str = "ssh", user: str = "alice", stamp: int | None = None) -> bytes:
    """A fresh datagram of ``user`` for ``door``, asking for the user's address."""
    return forge(user, {"alice": ALICE, "bob": BOB}[user], door, lab.user.ipv4, stamp)


def port_of(door: str) -> int:
    return {"ssh": 62201, "web": 62202}[door]


def opened_everywhere(lab, marks: dict[str, int], door: str = "ssh", port: str = "22/tcp"):
    for node in NODES:
        lab.nodes[node].wait_for(
            rf"opened door {door} to {lab.user.ipv4}: {port}", 10, since=marks[node]
        )


def counts(lab, node: str, done, timeout: float = 20.0) -> dict[str, int]:
    """A node's counters, once ``done(counters)`` holds (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        counted = lab.counters(node)
        if done(counted) or time.monotonic() > deadline:
            return counted
        time.sleep(0.1)


def marks(lab) -> dict[str, int]:
    return {node: lab.nodes[node].mark() for node in NODES}


def test_an_spa_at_one_node_opens_on_every_node_for_the_user_only_until_one_deadline(lab):
    seen = marks(lab)
    send(lab.user.netns, lab.address("a"), spa(lab))
    element = f"{lab.user.ipv4} 22/tcp"
    opened_everywhere(lab, seen)
    left = {node: lab.grants(node) for node in NODES}
    assert all(set(held) == {element} for held in left.values()), left  # not the stranger
    deadlines = [held[element] for held in left.values()]
    assert max(deadlines) - min(deadlines) < 1.0, left
    for node in NODES:
        lab.nodes[node].wait_for(
            rf"closed door ssh for {lab.user.ipv4} \(expired\)", 15, since=seen[node]
        )
        assert lab.grants(node) == {}
    status = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.topo["b"].netns,
            *lab.sesame(),
            "status",
            "--cluster",
            "-c",
            lab.config("b"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    told = {n["node"]: n for n in json.loads(status.stdout)}
    assert set(told) == set(NODES) and all(n["store"] == "up" for n in told.values())


def test_a_datagram_or_one_time_sequence_replayed_to_another_node_opens_nothing(lab):
    seen = marks(lab)
    web = spa(lab, "web")  # a door of each node's own: the claim is what stops the replay
    send(lab.user.netns, lab.address("a"), web, 62202)
    lab.nodes["a"].wait_for(rf"opened door web to {lab.user.ipv4}", 10, since=seen["a"])
    cluster_door = spa(lab, "ssh")
    send(lab.user.netns, lab.address("a"), cluster_door)
    opened_everywhere(lab, seen)
    for node in ("b", "c"):
        for netns in (lab.user.netns, lab.stranger.netns):
            for packet, port in ((web, 62202), (cluster_door, 62201)):
                send(netns, lab.address(node), packet, port)
    office = fwknop.encode(
        "alice", f"{lab.user.ipv4},tcp/8081", FW_KEY, FW_HMAC, timestamp=int(time.time())
    )  # fwknop's format, as its client sends it
    send(lab.user.netns, lab.address("a"), office, 62203)
    lab.nodes["a"].wait_for(rf"opened door office to {lab.user.ipv4}", 10, since=seen["a"])
    for node in ("b", "c"):
        send(lab.user.netns, lab.address(node), office, 62203)
    ports = one_time_sequence(decode_key(ALICE), "phone", (40000, 40999), 4)
    knock_from(lab.user.netns, lab.address("a"), *map(str, ports))
    lab.nodes["a"].wait_for(rf"opened door phone to {lab.user.ipv4}", 10, since=seen["a"])
    for node in ("b", "c"):  # a sniffer replays the sequence at another node
        knock_from(lab.user.netns, lab.address(node), *map(str, ports))
    for node in ("b", "c"):
        # the user's two datagrams, fwknop's and the sequence: claimed by a; the
        # stranger's copies came second: this node's own window holds them by then
        counted = counts(lab, node, lambda c: c.get("cluster replays", 0) >= 4)
        assert counted["cluster replays"] == 4 and counted["dropped replay"] == 2, counted
        assert counted.get("opened", 0) == 1, counted  # ssh, from a's entry
        assert set(lab.grants(node)) == {f"{lab.user.ipv4} 22/tcp"}  # ssh, from a's entry


def test_an_entry_written_without_the_cluster_key_opens_nothing_and_is_counted(lab):
    from ipaddress import ip_address

    from sesame.basics import Port
    from sesame.cluster.entries import Entry, Signer

    forged = Entry(
        "open",
        "ssh",
        ip_address(lab.stranger.ipv4),
        (Port("tcp", 22),),
        time.time() + 60,
        "alice",
        "a",
        time.time(),
        "f" * 24,
    )
    body, _ = Signer(os.urandom(32), "sesame").seal([forged])  # the wrong key
    store = lab.redis()
    mac = b"0" * 64
    store.zadd("sesame:live", {mac + b" " + body: int((time.time() + 60) * 1000)})
    store.xadd("sesame:entries", {"e": body, "m": mac})
    for node in NODES:
        lab.nodes[node].wait_for(r"holds an entry that is not a node's \(forged\)", 10)
        assert lab.counters(node)["cluster entries refused: forged"] >= 1
    lab.stop("c")  # a node that starts reads the live list: the forgery is refused again
    lab.start("c")
    lab.nodes["c"].wait_for(r"not a node's \(forged\)", 10)
    for node in NODES:
        assert lab.grants(node) == {}


def test_store_down_refuses_cluster_spa_keeps_plain_knocks_and_expiry_then_resumes(lab):
    seen = marks(lab)
    send(lab.user.netns, lab.address("a"), spa(lab))
    opened_everywhere(lab, seen)
    lab.stop_store()
    for node in NODES:
        lab.nodes[node].wait_for("does not answer", 15, since=seen[node])
    seen = marks(lab)
    for node in NODES:
        send(lab.user.netns, lab.address(node), spa(lab))
        knock_from(lab.user.netns, lab.address(node), "7000/tcp", "8000/tcp", "9000/udp")
        lab.nodes[node].wait_for(rf"opened door plain to {lab.user.ipv4}", 10, since=seen[node])
    for node in NODES:  # the grant made before still ends on time, with no store
        lab.nodes[node].wait_for(rf"closed door ssh for {lab.user.ipv4} \(expired\)", 15)
        assert f"{lab.user.ipv4} 22/tcp" not in lab.grants(node)
        counted = lab.counters(node)
        assert counted["cluster refused: store down"] == 1, counted
    lab.start_store()  # empty: it forgot every claim
    for node in NODES:
        lab.nodes[node].wait_for(r"cluster store \S+ answers", 20, since=seen[node])
        lab.nodes[node].wait_for("lost what it held", 20, since=seen[node])
        lab.nodes[node].wait_for("following its entries", 20, since=seen[node])
    forgot = time.time()
    while time.time() < forgot + 1.0:  # a fresh stamp: the next whole second
        time.sleep(0.05)
    seen = marks(lab)
    send(lab.user.netns, lab.address("b"), spa(lab))
    opened_everywhere(lab, seen)


def test_a_node_that_restarts_with_an_empty_table_reinstalls_live_grants(lab):
    seen = marks(lab)
    send(lab.user.netns, lab.address("a"), spa(lab))
    opened_everywhere(lab, seen)
    lab.stop("c")
    subprocess.run(
        ["ip", "netns", "exec", lab.topo["c"].netns, "nft", "delete", "table", "inet", "sesame"],
        check=True,
    )
    lab.start("c")
    lab.nodes["c"].wait_for(rf"opened door ssh to {lab.user.ipv4}: 22/tcp", 10)
    element = f"{lab.user.ipv4} 22/tcp"
    a, c = lab.grants("a")[element], lab.grants("c")[element]
    assert abs(a - c) < 1.0, (a, c)


STALE = "dropped stamped before the replay record was lost"


@pytest.mark.parametrize("victim", ["store", "a"])
def test_kill_9_in_a_burst_accepts_no_replay_and_no_grant_outlives_its_deadline(lab, victim):
    """Each datagram of a burst is accepted by one node at most: sent again to b, then
    to c, from the user and the stranger, after the store or node a was killed."""
    packets = [spa(lab) for _ in range(24)]  # within a user's burst (spa_burst 30)
    stop = threading.Event()

    def burst() -> None:
        for packet in packets:
            if stop.is_set():
                return
            send(lab.user.netns, lab.address("a"), packet)
            time.sleep(0.02)  # about half a second in all: the kill comes in the middle

    sender = threading.Thread(target=burst)
    sender.start()
    lab.nodes["a"].wait_for(rf"opened door ssh to {lab.user.ipv4}", 10)
    if victim == "store":
        lab.stop_store(signal.SIGKILL)
    else:
        lab.nodes["a"].process.kill()
    sender.join(30)
    if victim == "store":
        lab.start_store()  # empty: the claims are gone, and the nodes see it
        for node in NODES:
            lab.nodes[node].wait_for("lost what it held", 20)
    for node in ("b", "c"):
        for netns in (lab.user.netns, lab.stranger.netns):
            for packet in packets:
                send(netns, lab.address(node), packet)
        if victim == "store":  # stamped before the store forgot: refused
            counted = counts(lab, node, lambda c: c.get(STALE, 0) >= 2 * len(packets))
            assert counted.get(STALE, 0) == 2 * len(packets), counted
            assert counted.get("cluster entries told", 0) == 0, counted
        else:  # what a claimed is refused; what it never saw opens once, at b
            counted = counts(lab, node, lambda c: answered(c) >= len(packets))
            assert answered(counted) == len(packets), counted
            assert counted["dropped replay"] == len(packets), counted  # the stranger's
    if victim == "a":
        at_a = sum(
            bool(re.search(r"(opened|refreshed) door ssh", line)) for line in lab.nodes["a"].lines
        )
        at_b = lab.counters("b").get("cluster entries told", 0)
        assert lab.counters("c").get("cluster entries told", 0) == 0
        assert at_a > 0 and at_a + at_b <= len(packets), (at_a, at_b)
    last = time.monotonic()  # no acceptance after this: every grant ends by open_for
    for node in NODES:  # a's kernel too, after kill -9: its table stays, and expires
        while lab.grants(node):
            assert time.monotonic() < last + lab.open_for + 2.0, lab.grants(node)
            time.sleep(0.1)


def answered(counted: dict[str, int]) -> int:
    """Datagrams a node's claims settled: opened here (told), or claimed elsewhere."""
    return counted.get("cluster entries told", 0) + counted.get("cluster replays", 0)


def test_knock_sends_to_every_address_of_a_name_and_every_host_of_a_server(lab):
    """A pair behind one name, or listed as hosts of one server: each gets its own
    datagram, so each opens (web is a door of each node's own)."""
    hosts = Path("/etc/netns", lab.user.netns)
    hosts.mkdir(parents=True)
    try:
        (hosts / "hosts").write_text(
            f"127.0.0.1 localhost\n{lab.address('a')} pair.test\n{lab.address('b')} pair.test\n"
        )
        for host in ('"pair.test"', f'["{lab.address("b")}", "{lab.address("c")}"]'):
            seen = marks(lab)
            config = lab.tmp / "client.toml"
            config.write_text(CLIENT.format(host=host, key=ALICE))
            config.chmod(0o600)
            lab.run(
                lab.user.netns,
                *lab.sesame(),
                "knock",
                "twins",
                "--door",
                "web",
                "--client-config",
                str(config),
            )
            wanted = ("a", "b") if host == '"pair.test"' else ("b", "c")
            for node in wanted:
                lab.nodes[node].wait_for(
                    rf"(opened door web to|refreshed door web for) {lab.user.ipv4}",
                    10,
                    since=seen[node],
                )
    finally:
        (hosts / "hosts").unlink(missing_ok=True)
        hosts.rmdir()


CLIENT = """\
[[server]]
name = "twins"
host = {host}
user = "alice"
key = "{key}"
spa_port = 62202
"""
