"""A user behind NAT: a home namespace behind a router that masquerades, a STUN server
(Debian's coturn) on the outside, sesame's server with an SPA door."""

from __future__ import annotations

import os
import subprocess

import pytest

from sesame.lab import blocked, reachable
from sesame.netns import ip
from tests.helpers.lab import require
from tests.helpers.spa import ALICE, CLIENT_CONFIG, serve

ROUTER = "198.51.100.50"  # the router's outside address: what the server sees


@pytest.fixture
def home(lab):
    """Namespaces home (10.9.0.2) and router (10.9.0.1 inside, ROUTER outside, on the
    lab's link), the router masquerading; coturn answering STUN on the stranger's
    address. Everything is deleted with the lab."""
    turnserver = require("turnserver")
    tag = lab.topo.tag
    router, home = f"sesame-{tag}-router", f"sesame-{tag}-home"
    for name in (router, home):
        ip("netns", "add", name)
        lab.topo.made.append(name)
        ip("-n", name, "link", "set", "lo", "up")
    outside = ("netns", lab.server.netns, "type", "veth", "peer", "name", "eth0", "netns", router)
    ip("link", "add", "r0", *outside)
    ip("-n", lab.server.netns, "link", "set", "r0", "master", "br0", "up")
    ip("-n", router, "addr", "add", f"{ROUTER}/24", "dev", "eth0")
    ip("-n", router, "link", "set", "eth0", "up")
    ip("link", "add", "h0", "netns", router, "type", "veth", "peer", "name", "eth0", "netns", home)
    ip("-n", router, "addr", "add", "10.9.0.1/24", "dev", "h0")
    ip("-n", router, "link", "set", "h0", "up")
    ip("-n", home, "addr", "add", "10.9.0.2/24", "dev", "eth0")
    ip("-n", home, "link", "set", "eth0", "up")
    ip("-n", home, "route", "add", "default", "via", "10.9.0.1")
    lab.run(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    lab.run(
        router,
        "nft",
        "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; };"
        ' add rule ip nat post oifname "eth0" masquerade',
    )
    options = ("-n", "-S", "-L", lab.stranger.ipv4, "-p", "3478", "--no-cli", "--no-tls")
    stun = subprocess.Popen(
        ["ip", "netns", "exec", lab.stranger.netns, turnserver, *options, "--no-dtls"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield home
    finally:
        stun.terminate()
        stun.wait(10)


def config(lab, public: str | None) -> str:
    path = os.path.join(lab.tmp, f"client-{bool(public)}.toml")
    text = CLIENT_CONFIG.format(host=lab.server.ipv4, user="alice", key=ALICE)
    if public:
        text = text.replace("spa_port = 62201", f'spa_port = 62201\npublic_address = "{public}"')
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def test_spa_from_behind_nat_opens_through_stun(lab, home):
    daemon = serve(lab)
    cfg = config(lab, f"stun:{lab.stranger.ipv4}")
    mark = daemon.mark()
    for _ in range(20):  # coturn takes a moment to listen
        sent = lab.sesame(
            home, "knock", "home", "--door", "ssh", "--client-config", cfg, check=False
        )
        if sent.returncode == 0:
            break
    assert sent.returncode == 0, sent.stderr
    assert "warning" not in sent.stderr
    daemon.wait_for(rf"opened door ssh to {ROUTER}: 22/tcp \(user alice\)", 10, since=mark)
    assert reachable(home, lab.server.ipv4, 22)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)


def test_without_public_address_the_client_warns_and_the_server_says_why(lab, home):
    daemon = serve(lab)
    mark = daemon.mark()
    sent = lab.sesame(home, "knock", "home", "--door", "ssh", "--client-config", config(lab, None))
    assert "warning: this host's address 10.9.0.2 is private" in sent.stderr
    assert "public_address" in sent.stderr
    daemon.wait_for(
        rf"refused SPA of alice from {ROUTER}: it asks to open for 10\.9\.0\.2\. Behind NAT\?",
        10,
        since=mark,
    )
    assert lab.grants() == {}
