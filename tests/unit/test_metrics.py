"""Prometheus metrics: scraped and parsed with prometheus-client's own parser after
known traffic, the counts equal what was sent."""

from __future__ import annotations

import os
import socket
import time
from ipaddress import ip_address

from prometheus_client.parser import text_string_to_metric_families

from sesame import config
from sesame.daemon import Daemon
from sesame.service.metrics import Endpoint, Metrics, address
from sesame.testing import FakeClock, MemoryGate
from sesame.wire import spa
from sesame.wire.nflog import Logged
from tests.helpers.configs import EXAMPLE, KEY
from tests.helpers.packets import ipv4, tcp, udp

USER, SERVER = "198.51.100.2", "198.51.100.1"
SPA_DOOR = f"""
[[user]]
name = "alice"
key = "{KEY}"
doors = ["admin"]

[[door]]
name = "admin"
spa_port = 62201
open = ["2222/tcp"]
open_for = 60
"""


def samples(page: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(page.decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_counts_after_known_traffic_equal_what_was_sent(tmp_path):
    clock = FakeClock()
    text = EXAMPLE.replace("[server]", f'[server]\nstate_dir = "{tmp_path}/s"') + SPA_DOOR
    daemon = Daemon(config.parse(text, "t.toml"), MemoryGate(clock), clock)
    daemon.start()
    metrics = daemon.metrics = Metrics(daemon, lambda: {"knock": 7, "spa": 3})
    for port, proto in ((7000, "tcp"), (8000, "tcp"), (9000, "udp")):
        transport = tcp(port) if proto == "tcp" else udp(port)
        packet = ipv4(USER, SERVER, 6 if proto == "tcp" else 17, transport)
        daemon.packet(Logged(5155, b"", packet), clock())
    wrong = spa.cipher(bytes(range(5, 37)))
    for _ in range(4):
        payload = spa.encode(
            "alice", wrong, "admin", ip_address(USER), int(time.time()), os.urandom(12)
        )
        daemon.packet(Logged(5155, b"", ipv4(USER, SERVER, 17, udp(62201, payload))), clock())
    right = spa.cipher(bytes(range(32)))
    payload = spa.encode(
        "alice", right, "admin", ip_address(USER), int(time.time()), os.urandom(12)
    )
    daemon.packet(Logged(5155, b"", ipv4(USER, SERVER, 17, udp(62201, payload))), clock())
    clock.advance(31)
    daemon.tick(clock())
    found = samples(metrics.page())
    assert found["sesame_grants_opened_total", (("door", "ssh"),)] == 1
    assert found["sesame_grants_opened_total", (("door", "admin"),)] == 1
    assert found["sesame_grants_closed_total", (("door", "ssh"), ("reason", "expired"))] == 1
    assert found["sesame_grants_live", (("door", "admin"),)] == 1
    assert found["sesame_knocks_total", (("result", "completed"),)] == 1
    assert found["sesame_knocks_total", (("result", "other"),)] == 2
    assert found["sesame_knock_events_total", (("event", "unknocks"),)] == 0
    refused = (("kind", "spa"), ("reason", "bad tag"), ("result", "refused"))
    assert found["sesame_spa_datagrams_total", refused] == 4
    accepted = (("kind", "spa"), ("reason", ""), ("result", "accepted"))
    assert found["sesame_spa_datagrams_total", accepted] == 1
    assert found["sesame_packets_dropped_total", (("reason", "bad tag"),)] == 4
    assert found["sesame_kernel_dropped_packets_total", (("chain", "knock"),)] == 7
    assert found["sesame_packet_to_grant_seconds_count", ()] == 2
    daemon.close()


def test_the_endpoint_answers_get_metrics_and_nothing_else(tmp_path):
    clock = FakeClock()
    daemon = Daemon(config.parse(EXAMPLE, "t.toml"), MemoryGate(clock), clock)
    metrics = Metrics(daemon, dict)
    endpoint = Endpoint("127.0.0.1:39155", metrics, lambda fd, on: None)
    port = endpoint.sock.getsockname()[1]

    def get(request: bytes) -> bytes:
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(request)
        endpoint.accept(0.0)
        [fd] = endpoint.clients
        endpoint.read(fd, endpoint.respond)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        client.close()
        return answer

    try:
        page = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (
            page.startswith(b"HTTP/1.0 200 OK\r\n")
            and b'sesame_knocks_total{result="other"} 0.0' in page
        )
        assert get(b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 404 ")
        assert get(b"\x00" * 70000).startswith(b"HTTP/1.0 400 ")
    finally:
        endpoint.close()


def test_metrics_addresses():
    assert address("127.0.0.1:9155") == ("127.0.0.1", 9155)
    assert address("[::1]:9155") == ("::1", 9155)
    for bad in ("9155", "127.0.0.1:", "127.0.0.1:99999", ":9155"):
        try:
            address(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
