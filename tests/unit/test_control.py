"""The control socket's protocol, and the daemon's answers, on a real Unix socket."""

from __future__ import annotations

import contextlib
import json
import socket
from ipaddress import ip_address

from hypothesis import given
from hypothesis import strategies as st

from sesame import config
from sesame.basics import parse_port
from sesame.daemon import Daemon
from sesame.service.control import MAX_REQUEST, Control, parse
from sesame.service.requests import answer
from sesame.testing import FakeClock, MemoryGate
from sesame.wire.nflog import Logged
from tests.helpers.configs import EXAMPLE
from tests.helpers.packets import ipv4, tcp, udp


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_reason(data):
    assert isinstance(parse(data), dict | str)


def test_requests_are_checked_before_anything_is_done():
    assert parse(b'{"version": 1, "command": "status"}') == {"version": 1, "command": "status"}
    assert parse(b"\xff\xfe") == "not a JSON request"
    assert parse(b"[1]") == "a request is a JSON object"
    assert parse(b'{"version": 2, "command": "status"}') == "protocol version 1 only"
    assert parse(b'{"version": 1, "command": "rm"}').startswith("unknown command")
    assert parse(b'{"version": 1, "command": "revoke"}') == "revoke needs 'who'"
    assert parse(b" " * (MAX_REQUEST + 1)).startswith("request longer than")


def opened_daemon():
    clock = FakeClock()
    gate = MemoryGate(clock)
    daemon = Daemon(config.parse(EXAMPLE, "t.toml"), gate, clock)
    daemon.start()
    for port, proto in ((7000, "tcp"), (8000, "tcp"), (9000, "udp")):
        transport = tcp(port) if proto == "tcp" else udp(port)
        number = 6 if proto == "tcp" else 17
        daemon.packet(
            Logged(5155, b"", ipv4("198.51.100.2", "198.51.100.1", number, transport)), clock()
        )
        clock.advance(0.1)
    return daemon, gate, clock


def ask(control: Control, daemon: Daemon, data: bytes, now: float = 0.0) -> dict:
    """Send ``data`` as a client, let the control socket answer, read the answer."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(control.path)
    client.sendall(data)
    control.accept(now)
    [fd] = control.clients
    control.serve(fd, lambda request: answer(daemon, request, lambda: None))
    reply = client.recv(1 << 20)
    client.close()
    assert not control.clients  # answered and closed
    return json.loads(reply)


def test_status_revoke_and_counters_through_the_socket(tmp_path):
    daemon, gate, clock = opened_daemon()
    control = Control(str(tmp_path / "control"), lambda fd, on: None)
    try:
        status = ask(control, daemon, b'{"version": 1, "command": "status"}\n')
        assert status["ok"] and [g["address"] for g in status["grants"]] == ["198.51.100.2"]
        assert status["grants"][0]["port"] == 22 and status["grants"][0]["door"] == "ssh"
        counted = ask(control, daemon, b'{"version": 1, "command": "counters"}\n')
        assert counted["counters"]["opened"] == 1
        revoked = ask(
            control, daemon, b'{"version": 1, "command": "revoke", "who": "198.51.100.2"}\n'
        )
        assert revoked["revoked"][0]["ports"] == ["22/tcp"]
        assert not gate.allows(ip_address("198.51.100.2"), parse_port("22"), clock())
        assert daemon.engine.counters["revoked"] == 1
        again = ask(
            control, daemon, b'{"version": 1, "command": "revoke", "who": "198.51.100.2"}\n'
        )
        assert again == {"version": 1, "ok": False, "error": "no live grant for 198.51.100.2"}
    finally:
        control.close()


def test_garbage_and_huge_requests_get_an_error_and_change_nothing(tmp_path):
    daemon, _, _ = opened_daemon()
    control = Control(str(tmp_path / "control"), lambda fd, on: None)
    try:
        assert ask(control, daemon, b"\x00\x01garbage\n")["error"] == "not a JSON request"
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(control.path)
        client.setblocking(False)
        control.accept(0.0)
        [fd] = control.clients
        sent = 0
        while sent < 1 << 20 and control.clients:
            with contextlib.suppress(BlockingIOError):
                sent += client.send(b"x" * 65536)
            control.serve(fd, lambda request: answer(daemon, request, lambda: None))
        assert not control.clients  # answered once past the limit, and closed
        client.setblocking(True)
        reply = json.loads(client.recv(4096).split(b"\n")[0])
        client.close()
        assert reply["error"].startswith("request longer than")
        assert len(daemon.engine.grants) == 1
    finally:
        control.close()


def test_a_client_that_says_nothing_is_answered_and_closed_in_time(tmp_path):
    control = Control(str(tmp_path / "control"), lambda fd, on: None)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(control.path)
    control.accept(100.0)
    assert control.next_expiry() == 105.0
    control.expire(104.9)
    assert control.clients
    control.expire(105.0)
    assert not control.clients
    assert json.loads(client.recv(4096))["error"] == "no request in time"
    client.close()
    control.close()


def test_a_second_daemon_cannot_take_the_socket_of_a_running_one(tmp_path):
    import pytest

    from sesame.errors import SesameError

    path = str(tmp_path / "control")
    first = Control(path, lambda fd, on: None)
    with pytest.raises(SesameError, match="another sesame is serving on"):
        Control(path, lambda fd, on: None)
    first.sock.close()  # gone without cleaning up: the next one takes over
    Control(path, lambda fd, on: None).close()
