"""Ports the host forwards are gated as its own are: a port published the way Docker
publishes one (its DNAT to a container, its filter rules), in namespaces."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from sesame.lab import EchoServer, blocked, connect, echo, knock_from, reachable
from sesame.netns import inside
from tests.helpers.lab import require
from tests.helpers.spa import client_config, send, serve

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


GATEWAY = """\
[server]

[[door]]
name = "inside"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5
open = ["10.0.5.20:22/tcp", "[fd00:5::20]:22/tcp"]
open_for = 30

[[door]]
name = "nat"
sequence = ["7100/tcp", "7200/tcp"]
seq_timeout = 5
dnat = [{ port = "2222/tcp", to = "10.0.5.20:22" }, { port = "2224/tcp", to = "[fd00:5::20]:22" }]
open_for = 30

[[door]]
name = "natm"
sequence = ["7300/tcp", "7400/tcp"]
seq_timeout = 5
dnat = [{ port = "2223/tcp", to = "10.0.5.20:23" }]
masquerade = true
open_for = 30
"""


def gateway(lab, route_back: bool) -> list[EchoServer]:
    """An internal host (10.0.5.20, fd00:5::20) behind the server, serving 22 and 23;
    the clients route the internal network through the server."""
    inside = lab.topo.internal(route_back=route_back)
    for client in (lab.user, lab.stranger):
        lab.run(client.netns, "ip", "route", "add", "10.0.5.0/24", "via", lab.server.ipv4)
        lab.run(client.netns, "ip", "-6", "route", "add", "fd00:5::/64", "via", lab.server.ipv6)
    return [EchoServer(inside.netns, 22), EchoServer(inside.netns, 23)]


def test_a_door_opens_a_path_to_an_internal_host_for_the_knocker_only(lab):
    services = gateway(lab, route_back=True)
    try:
        daemon = lab.serve(GATEWAY)
        for netns in (lab.user.netns, lab.stranger.netns):
            assert blocked(netns, "10.0.5.20", 22)
            assert blocked(netns, "fd00:5::20", 22)
        lab.knock_open()
        assert reachable(lab.user.netns, "10.0.5.20", 22)
        assert blocked(lab.stranger.netns, "10.0.5.20", 22)
        assert blocked(lab.user.netns, "fd00:5::20", 22)  # knocked over IPv4: IPv4 only
        lab.knock_open(ipv6=True)
        assert reachable(lab.user.netns, "fd00:5::20", 22)
        assert blocked(lab.stranger.netns, "fd00:5::20", 22)
        status = lab.sesame(lab.server.netns, "status", "-c", lab.tmp + "/sesame.toml").stdout
        assert f"{lab.user.ipv4} 10.0.5.20:22/tcp" in " ".join(status.split())
        mark = daemon.mark()
        knock_from(lab.user.netns, lab.server.ipv4, "7100/tcp", "7200/tcp")
        daemon.wait_for(rf"opened door nat to {lab.user.ipv4}: 2222/tcp", 10, since=mark)
        assert reachable(lab.user.netns, lab.server.ipv4, 2222)  # DNAT-ed to 10.0.5.20:22
        assert blocked(lab.stranger.netns, lab.server.ipv4, 2222)
        status = lab.sesame(lab.server.netns, "status", "-c", lab.tmp + "/sesame.toml").stdout
        assert f"{lab.user.ipv4} 2222/tcp->10.0.5.20:22 nat" in " ".join(status.split())
        mark = daemon.mark()  # NAT66, asked for by name: over IPv6, to the IPv6 host
        knock_from(lab.user.netns, lab.server.ipv6, "7100/tcp", "7200/tcp")
        daemon.wait_for(rf"opened door nat to {lab.user.ipv6}: ", 10, since=mark)
        assert reachable(lab.user.netns, lab.server.ipv6, 2224)
        assert blocked(lab.stranger.netns, lab.server.ipv6, 2224)
    finally:
        for service in services:
            service.close()


def test_masquerade_for_an_internal_host_without_a_route_back(lab):
    services = gateway(lab, route_back=False)
    try:
        daemon = lab.serve(GATEWAY)
        mark = daemon.mark()
        knock_from(lab.user.netns, lab.server.ipv4, "7100/tcp", "7200/tcp")
        knock_from(lab.user.netns, lab.server.ipv4, "7300/tcp", "7400/tcp")
        daemon.wait_for(rf"opened door natm to {lab.user.ipv4}: 2223/tcp", 10, since=mark)
        daemon.wait_for(rf"opened door nat to {lab.user.ipv4}: 2222/tcp", 10, since=mark)
        assert blocked(lab.user.netns, lab.server.ipv4, 2222)  # its reply cannot come back
        assert reachable(lab.user.netns, lab.server.ipv4, 2223)  # masqueraded, it can
        assert blocked(lab.stranger.netns, lab.server.ipv4, 2223)
    finally:
        for service in services:
            service.close()


def test_an_spa_port_is_judged_on_arrival_for_this_host_alone(lab):
    """The SPA port's datagrams are judged in prerouting, before routing: those to this
    host are sesame's (a knock opens), those passing through to a host behind it on the
    same port reach that host, as before."""
    services = gateway(lab, route_back=True)
    try:
        daemon = serve(lab)
        with inside(lab.topo["internal"].netns):
            listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with listener:
            listener.settimeout(10)
            listener.bind(("10.0.5.20", 62201))
            send(lab.user.netns, "10.0.5.20", b"passing through")
            data, (address, _port) = listener.recvfrom(100)
            assert (data, address) == (b"passing through", lab.user.ipv4)
        mark = daemon.mark()
        cfg = client_config(lab)
        lab.sesame(lab.user.netns, "knock", "home", "--door", "ssh", "--client-config", cfg)
        daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}: 22/tcp", 10, since=mark)
        assert reachable(lab.user.netns, lab.server.ipv4, 22)
    finally:
        for service in services:
            service.close()
