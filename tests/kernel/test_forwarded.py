"""Ports the host forwards are gated as its own are: a port published the way Docker
publishes one (its DNAT to a container, its filter rules), in namespaces."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sesame.lab import EchoServer, blocked, connect, echo, reachable
from tests.helpers.lab import require

# The rules Docker 24 writes through iptables-nft for `docker run -p 8080:80` with the
# container at 172.17.0.2 on the bridge docker0 (`iptables-save` on a Docker host):
# a DNAT of local port 8080 in the nat table, the filter table's FORWARD policy DROP
# with its chains, and the container's port accepted in the filter chain DOCKER.
DOCKER_RULES = [
    ("nat", "-N DOCKER"),
    ("nat", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"),
    ("nat", "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"),
    ("nat", "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"),
    ("nat", "-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp --dport 80 -j MASQUERADE"),
    ("nat", "-A DOCKER -i docker0 -j RETURN"),
    ("nat", "-A DOCKER ! -i docker0 -p tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"),
    ("filter", "-P FORWARD DROP"),
    ("filter", "-N DOCKER"),
    ("filter", "-N DOCKER-ISOLATION-STAGE-1"),
    ("filter", "-N DOCKER-ISOLATION-STAGE-2"),
    ("filter", "-N DOCKER-USER"),
    ("filter", "-A FORWARD -j DOCKER-USER"),
    ("filter", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"),
    ("filter", "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ("filter", "-A FORWARD -o docker0 -j DOCKER"),
    ("filter", "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT"),
    ("filter", "-A FORWARD -i docker0 -o docker0 -j ACCEPT"),
    ("filter", "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp --dport 80 -j ACCEPT"),
    ("filter", "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2"),
    ("filter", "-A DOCKER-ISOLATION-STAGE-1 -j RETURN"),
    ("filter", "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP"),
    ("filter", "-A DOCKER-ISOLATION-STAGE-2 -j RETURN"),
    ("filter", "-A DOCKER-USER -j RETURN"),
]

WEB = """\
[server]

[[door]]
name = "web"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5
open = ["8080/tcp"]
open_for = 4
"""


def docker(lab) -> EchoServer:
    """A "container" (a namespace on docker0) serving port 80, published as 8080."""
    iptables = require("iptables")
    container = lab.topo.internal("container", "docker0", ("172.17.0.", "fd00:17::"), 2)
    service = EchoServer(container.netns, 80)
    for table, rule in DOCKER_RULES:
        lab.run(lab.server.netns, iptables, "-t", table, *rule.split())
    return service


def test_a_port_published_as_docker_publishes_it_is_gated(lab):
    service = docker(lab)
    try:
        server = lab.server.ipv4
        # Docker alone publishes it to everyone: the test's rules do what Docker's do.
        assert reachable(lab.stranger.netns, server, 8080)
        lab.serve(WEB)
        assert blocked(lab.user.netns, server, 8080)
        assert blocked(lab.stranger.netns, server, 8080)
        lab.knock_open()
        assert reachable(lab.user.netns, server, 8080)
        assert blocked(lab.stranger.netns, server, 8080)
        established = connect(lab.user.netns, server, 8080)
        assert established is not None
        with established:
            gone = lab.wait_no_grants(15)
            assert time.monotonic() - gone < 5
            assert blocked(lab.user.netns, server, 8080)  # a new connection fails
            assert echo(established)  # the established one goes on
    finally:
        service.close()


def test_a_forwarded_grant_expires_on_time_after_kill_9(lab):
    service = docker(lab)
    try:
        daemon = lab.serve(WEB)
        lab.knock_open()
        assert reachable(lab.user.netns, lab.server.ipv4, 8080)
        assert daemon.process is not None
        os.kill(daemon.process.pid, signal.SIGKILL)
        daemon.process.wait(10)
        killed = time.monotonic()
        gone = lab.wait_no_grants(15)
        assert gone - killed < 5  # open_for 4: the kernel's timeout, not the daemon
        assert blocked(lab.user.netns, lab.server.ipv4, 8080)
    finally:
        service.close()


def test_check_tells_what_other_tables_do_to_guarded_ports(lab):
    service = docker(lab)
    try:
        config = lab.write_config(WEB)
        checked = lab.sesame(lab.server.netns, "check", "-c", config)
        assert "note: table ip nat, chain DOCKER DNATs guarded port 8080/tcp: sesame gates it" in (
            checked.stderr
        )
        early = "add chain ip early pre { type nat hook prerouting priority -160; }"
        Path(lab.tmp, "early.nft").write_text(f"add table ip early\n{early}\n")
        lab.run(lab.server.netns, "nft", "-f", str(Path(lab.tmp, "early.nft")))
        checked = lab.sesame(lab.server.netns, "check", "-c", config)
        assert checked.returncode == 0
        assert "warning: table ip early, chain pre rewrites destinations at priority -160" in (
            checked.stderr
        )
    finally:
        service.close()
