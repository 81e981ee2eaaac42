"""A cluster without Redis: [cluster] read and refused, entries sealed and opened,
the rules of engine.cluster row by row, and daemons sharing a memory store."""

from __future__ import annotations

import os
import re
import time
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesame import config
from sesame.basics import Port
from sesame.cluster.entries import Entry, Signer
from sesame.crypto import decode_key, encode_key
from sesame.daemon import Daemon
from sesame.doors import Door, User
from sesame.engine.cluster import Closing, Down, Scopes, Up, after, opens
from sesame.engine.events import Closed, Grant, Opened, Refreshed
from sesame.errors import ConfigError, RemoteError
from sesame.service.metrics import Metrics
from sesame.testing import Backend, FakeClock, MemoryGate, MemoryStore, check_store
from sesame.wire import spa
from sesame.wire.nflog import Logged
from tests.helpers.packets import ipv4, udp

KEY = encode_key(bytes(range(100, 132)))
ALICE = encode_key(bytes(range(32)))
USER = "198.51.100.2"
STRANGER = "198.51.100.3"
SSH = Port("tcp", 22)
CONFIG = """\
[server]
state_dir = "{tmp}/state-{node}"

[cluster]
store = "redis://sesame@192.0.2.9:6379/0"
key_file = "{tmp}/cluster.key"
node = "{node}"
{extra}
[[user]]
name = "alice"
key = "{alice}"
doors = ["ssh", "web"]

[[door]]
name = "ssh"
spa_port = 62201
open = ["22/tcp"]
open_for = 30
scope = "cluster"
one_address_per_user = true

[[door]]
name = "web"
spa_port = 62202
open = ["8080/tcp"]
open_for = 30
on_store_down = "local"
"""


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    key = tmp_path / "cluster.key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    return tmp_path


def load(tmp: Path, node: str = "a", extra: str = "") -> config.Config:
    text = CONFIG.format(tmp=tmp, node=node, alice=ALICE, extra=extra)
    return config.parse(text, "sesame.toml")


def test_the_cluster_table_is_read_with_its_key(tmp):
    cluster = load(tmp, extra='name = "edge"\non_store_down = "local"\n').cluster
    assert cluster is not None
    assert (cluster.node, cluster.name, cluster.on_store_down) == ("a", "edge", "local")
    assert cluster.key == decode_key(KEY) and cluster.password is None
    assert KEY not in repr(cluster)
    (tmp / "password").write_text("s3cret\n")
    (tmp / "password").chmod(0o640)
    text = CONFIG.format(
        tmp=tmp, node="a", alice=ALICE, extra=f'password_file = "{tmp}/password"\n'
    )
    tls = config.parse(text.replace("redis://", "rediss://"), "sesame.toml").cluster
    assert tls is not None and tls.store.startswith("rediss://") and tls.password == "s3cret"
    assert "s3cret" not in repr(tls)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("redis://sesame@", "redis://sesame:hunter2@"), "store holds a password"),
        (("redis://sesame@", "http://"), 'store must be "redis://'),
        (("6379/0", "6379/zero"), "database must be a number"),
        (('node = "a"', 'node = "a b"'), "node must be 1-63 letters"),
        (('node = "a"', 'node = "a"\ncolour = "red"'), "unknown key 'colour' in [cluster]"),
        (('scope = "cluster"', 'scope = "everywhere"'), 'scope must be "local" or "cluster"'),
        (('on_store_down = "local"', 'on_store_down = "open"'), "on_store_down must be"),
    ],
)
def test_bad_cluster_settings_name_the_line_and_say_why(tmp, change, reason):
    text = CONFIG.format(tmp=tmp, node="a", alice=ALICE, extra="").replace(*change)
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        config.parse(text, "sesame.toml")
    assert re.match(r"sesame\.toml:\d+: ", str(caught.value))
    assert "hunter2" not in str(caught.value)


def test_a_cluster_key_others_may_read_or_of_the_wrong_size_is_refused(tmp):
    (tmp / "cluster.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 640"):
        load(tmp)
    (tmp / "cluster.key").chmod(0o600)
    (tmp / "cluster.key").write_text(encode_key(bytes(16)))
    with pytest.raises(ConfigError, match="the cluster key: key must be 32 bytes"):
        load(tmp)


def test_scope_without_a_cluster_is_refused_at_the_doors_line(tmp):
    text = CONFIG.format(tmp=tmp, node="a", alice=ALICE, extra="")
    text = re.sub(r"\[cluster\]\n(.*\n){3}", "", text)
    with pytest.raises(ConfigError, match=r":\d+: scope is for a cluster, and there is no"):
        config.parse(text, "sesame.toml")


# -- entries ------------------------------------------------------------------------


def entry(**change) -> Entry:
    fields = {
        "kind": "open",
        "door": "ssh",
        "address": ip_address(USER),
        "ports": (SSH,),
        "until": 2000.0,
        "user": "alice",
        "node": "b",
        "at": 1970.0,
        "id": "1" * 24,
    } | change
    return Entry(**fields)


def test_an_entry_opens_only_under_the_key_and_name_it_was_sealed_with():
    signer = Signer(bytes(32), "sesame")
    body, mac = signer.seal([entry(), entry(kind="close", reason="revoked", id="2" * 24)])
    assert signer.open(body, mac) == [entry(), entry(kind="close", reason="revoked", id="2" * 24)]
    for other in (Signer(bytes(range(32)), "sesame"), Signer(bytes(32), "other")):
        with pytest.raises(RemoteError, match="forged"):
            other.open(body, mac)
    tampered = body.replace(USER.encode(), STRANGER.encode())
    with pytest.raises(RemoteError, match="forged"):
        signer.open(tampered, mac)


@given(st.binary(max_size=300), st.binary(max_size=80))
def test_hostile_entries_raise_only_remote_errors(body, mac):
    signer = Signer(bytes(32), "sesame")
    with pytest.raises(RemoteError):
        signer.open(body, mac)
    sealed_mac = signer._mac(body)  # a node with the key wrote junk: malformed
    try:
        signer.open(body, sealed_mac)
    except RemoteError as exc:
        assert exc.reason in ("malformed", "forged")


def test_a_claim_names_neither_user_nor_door():
    signer = Signer(bytes(32), "edge")
    key = signer.claim(b"alice ssh nonce")
    assert key.startswith("edge:seen:") and "alice" not in key and len(key) == 42
    assert key == signer.claim(b"alice ssh nonce") != signer.claim(b"alice ssh nonce2")


# -- the rules ----------------------------------------------------------------------


def test_the_store_modes_follow_the_table():
    assert after(Up(), "claimed", 1.0) == Up()
    assert after(Up(), "taken", 1.0) == Up()
    assert after(Up(), "failed", 1.0, "refused") == Down(1.0, "refused")
    assert after(Down(1.0, "x"), "failed", 5.0, "y") == Down(1.0, "x")
    assert after(Down(1.0, "x"), "back", 5.0) == Up()
    assert after(Down(1.0, "x"), "claimed", 5.0) == Down(1.0, "x")
    assert [opens(o, "refuse") for o in ("claimed", "taken", "forgotten", "failed")] == [
        True,
        False,
        False,
        False,
    ]
    assert [opens(o, "local") for o in ("claimed", "taken", "forgotten", "failed")] == [
        True,
        False,
        False,
        True,
    ]


def scopes() -> Scopes:
    ssh = Door("ssh", open=(SSH,), spa_port=62201, scope="cluster", open_for=30)
    web = Door("web", open=(Port("tcp", 8080),), spa_port=62202, on_store_down="local")
    judge = Scopes("a")
    judge.configure([ssh, web], [User("alice", bytes(32), ("ssh", "web"))], [])
    return judge


def test_an_entry_from_another_node_opens_what_this_nodes_door_allows():
    judge = scopes()
    admitted = judge.judge(entry(), 1990.0)
    assert not isinstance(admitted, Closing)
    assert (admitted.door, admitted.ports, admitted.seconds, admitted.user) == (
        "ssh",
        (SSH,),
        10.0,
        "alice",
    )
    assert judge.judge(entry(until=9999.0), 1990.0).seconds == 35.0  # open_for + skew
    closing = judge.judge(entry(kind="close", reason="unknock"), 1990.0)
    assert closing == Closing("ssh", ip_address(USER), "unknock")
    refusals = [
        (entry(door="web"), "not a cluster door here"),
        (entry(door="gone"), "not a cluster door here"),
        (entry(user="mallory"), "user may not open it here"),
        (entry(ports=(Port("tcp", 23),)), "ports the door does not open here"),
        (entry(until=1989.0), "expired"),
    ]
    for bad, reason in refusals:
        with pytest.raises(RemoteError, match=reason):
            judge.judge(bad, 1990.0)
    assert judge.on_store_down("web") == "local" and judge.on_store_down("ssh") == "refuse"


def test_only_cluster_doors_openings_and_early_closings_are_told():
    judge = scopes()
    grant = Grant("ssh", ip_address(USER), (SSH,), 110.0, "alice")
    local = Grant("web", ip_address(USER), (Port("tcp", 8080),), 110.0, "alice")
    told = judge.entries(
        [
            Opened(grant),
            Refreshed(grant),
            Closed(grant, "revoked"),
            Closed(grant, "unknock"),
            Closed(grant, "expired"),
            Closed(grant, "replaced"),
            Opened(local),
        ],
        100.0,
        5000.0,
    )
    assert [(e.kind, e.reason, e.until) for e in told] == [
        ("open", "", 5010.0),
        ("open", "", 5010.0),
        ("close", "revoked", 5010.0),
        ("close", "unknock", 5010.0),
    ]
    assert len({e.id for e in told}) == 4 and all(e.node == "a" for e in told)


# -- daemons on a memory store ------------------------------------------------------


def test_the_memory_store_keeps_the_store_promises():
    backend = Backend()
    check_store(lambda: MemoryStore(backend), timeout=1.0)


@pytest.fixture
def node(tmp):
    """Start a node (a daemon on the memory store); every one is closed after."""
    made: list[Daemon] = []

    def start(backend: Backend, name: str, clock: FakeClock) -> Daemon:
        daemon = Daemon(load(tmp, name), MemoryGate(clock), clock, store=MemoryStore(backend))
        made.append(daemon)
        daemon.start()
        daemon.heard(clock())
        return daemon

    yield start
    for daemon in made:
        daemon.close()


def datagram(door: str = "ssh", address: str = USER) -> bytes:
    aead = spa.cipher(decode_key(ALICE))
    return spa.encode("alice", aead, door, ip_address(address), int(time.time()), os.urandom(12))


def deliver(daemon: Daemon, clock: FakeClock, payload: bytes, port: int = 62201, source=USER):
    daemon.packet(Logged(5155, b"", ipv4(source, "198.51.100.1", 17, udp(port, payload))), clock())


def held(daemon: Daemon) -> set[tuple[str, str]]:
    return {(g.door, str(g.address)) for g in daemon.engine.grants.all()}


def test_a_grant_opens_on_every_node_once_claimed_and_a_replay_nowhere(node):
    backend, clock = Backend(), FakeClock()
    a, b = node(backend, "a", clock), node(backend, "b", clock)
    packet = datagram()
    deliver(a, clock, packet)
    assert held(a) == set()  # not before the store says it is claimed
    a.heard(clock())
    assert held(a) == {("ssh", USER)}
    b.heard(clock())
    assert held(b) == {("ssh", USER)}
    deliver(b, clock, packet)  # the same datagram at the other node
    b.heard(clock())
    assert b.cluster is not None and b.cluster.counts["cluster replays"] == 1
    web = datagram("web")
    deliver(a, clock, web, 62202)
    a.heard(clock())
    b.heard(clock())
    assert ("web", USER) in held(a) and ("web", USER) not in held(b)  # a door of a's own
    closed = a.engine.revoke("ssh", ip_address(USER))
    a.carry_out(closed, clock())
    b.heard(clock())
    assert ("ssh", USER) not in held(b)


def test_a_lone_datagrams_entry_goes_with_its_claim_a_batchs_after_its_claims(node):
    backend, clock = Backend(), FakeClock()
    a, b = node(backend, "a", clock), node(backend, "b", clock)
    deliver(a, clock, datagram())
    b.heard(clock())
    assert held(b) == {("ssh", USER)}  # before a has heard that its claim was made
    a.heard(clock())
    assert held(a) == {("ssh", USER)} and len(backend.live) == 1  # told once
    packets = [udp(62201, datagram()) for _ in range(2)]
    a.packets([Logged(5155, b"", ipv4(USER, "198.51.100.1", 17, p)) for p in packets], clock())
    assert len(backend.live) == 1  # a batch's entries wait for its claims
    a.heard(clock())
    assert len(backend.live) == 2  # ... then go together, in one message
    assert a.cluster is not None and a.cluster.counts["cluster entries told"] == 3


def test_with_the_store_down_a_door_refuses_unless_it_opens_alone(node):
    backend, clock = Backend(), FakeClock()
    a = node(backend, "a", clock)
    backend.fail()
    a.heard(clock())
    assert a.cluster is not None and a.cluster.down
    deliver(a, clock, datagram())
    deliver(a, clock, datagram("web"), 62202)
    a.heard(clock())
    assert held(a) == {("web", USER)}  # on_store_down = "local"
    counted = a.cluster.counts
    assert counted["cluster refused: store down"] == 1
    assert counted["cluster opened alone: store down"] == 1
    stamped = datagram()
    backend.back(forgot=True)
    a.heard(clock())
    assert not a.cluster.down and a.engine.not_before > 0
    deliver(a, clock, stamped)  # stamped before the store forgot: it may have been claimed
    a.heard(clock())
    assert ("ssh", USER) not in held(a)
    assert a.drops == {"stamped before the replay record was lost": 1}


def test_a_forged_entry_opens_nothing_and_is_counted(node):
    backend, clock = Backend(), FakeClock()
    a = node(backend, "a", clock)
    body, _ = Signer(os.urandom(32), "sesame").seal([entry(address=ip_address(STRANGER))])
    backend.stores[0].tell(body, b"0" * 64, time.time() + 60)
    backend.stores[0].send()
    a.heard(clock())
    assert held(a) == set()
    assert a.cluster is not None and a.cluster.counts["cluster entries refused: forged"] == 1


def test_a_node_that_starts_later_opens_the_live_grants(node):
    backend, clock = Backend(), FakeClock()
    a = node(backend, "a", clock)
    deliver(a, clock, datagram())
    a.heard(clock())
    c = node(backend, "c", clock)
    assert held(c) == {("ssh", USER)}
    left = [g.expires - clock() for g in c.engine.grants.all()]
    assert 28 < left[0] <= 30.5


def test_one_address_per_user_and_the_stores_state_hold_on_every_node(node):
    backend, clock = Backend(), FakeClock()
    a, b = node(backend, "a", clock), node(backend, "b", clock)
    deliver(a, clock, datagram())
    a.heard(clock())
    b.heard(clock())
    deliver(a, clock, datagram(address=STRANGER), source=STRANGER)  # alice, elsewhere now
    a.heard(clock())
    b.heard(clock())
    assert held(a) == held(b) == {("ssh", STRANGER)}
    metrics = Metrics(b, dict)
    assert b"sesame_cluster_store_up 1.0" in metrics.page()
    backend.fail()
    b.heard(clock())
    assert b"sesame_cluster_store_up 0.0" in metrics.page()
    assert b'sesame_cluster_events_total{event="cluster store failures"} 1.0' in metrics.page()


def test_a_reload_may_not_change_the_cluster(node, tmp):
    backend, clock = Backend(), FakeClock()
    a = node(backend, "a", clock)
    text = CONFIG.format(tmp=tmp, node="a", alice=ALICE, extra="")
    renamed = text.replace('node = "a"', 'node = "renamed"')
    refused = a.reload(lambda: config.parse(renamed, "sesame.toml"))
    assert refused is not None and "[cluster] cannot change on reload; restart" in refused
    assert a.config.cluster is not None and a.config.cluster.node == "a"
    assert a.reload(lambda: load(tmp, "a")) is None


def test_a_claim_answered_after_a_reload_removed_its_door_opens_nothing(node, tmp):
    backend, clock = Backend(), FakeClock()
    a = node(backend, "a", clock)
    deliver(a, clock, datagram("web"), 62202)  # claimed in the store; not yet heard
    text = CONFIG.format(tmp=tmp, node="a", alice=ALICE, extra="")
    without_web = text[: text.index('[[door]]\nname = "web"')].replace(', "web"', "")
    assert a.reload(lambda: config.parse(without_web, "sesame.toml")) is None
    a.heard(clock())
    assert held(a) == set()
