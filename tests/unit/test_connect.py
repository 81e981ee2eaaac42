"""``sesame connect``'s connector without the kernel's gates: the order of addresses,
a door that opens only after the knock, the time limit, the fd handed to ssh, the relay."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from sesame import cli, clientconfig, connect
from sesame.errors import ConfigError


def test_addresses_ipv6_first_then_alternating(monkeypatch):
    infos = [
        (socket.AF_INET, 0, 0, "", ("192.0.2.1", 22)),
        (socket.AF_INET, 0, 0, "", ("192.0.2.2", 22)),
        (socket.AF_INET6, 0, 0, "", ("2001:db8::1", 22, 0, 0)),
        (socket.AF_INET, 0, 0, "", ("192.0.2.1", 22)),  # twice: tried once
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a: infos)
    assert [a for _, a in connect.addresses("h")] == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]


def test_a_door_that_opens_after_the_knock_is_waited_for():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound, not listening: refused, as a closed door
    port = listener.getsockname()[1]
    knocked = []

    def knock(family: int, address: str) -> None:
        knocked.append(address)
        threading.Timer(0.3, listener.listen).start()  # the daemon opens a moment later

    with listener:
        conn = connect.connect([(socket.AF_INET, "127.0.0.1")], port, knock, timeout=10)
        with conn:
            assert conn.getpeername() == ("127.0.0.1", port)
            assert conn.getblocking()
    assert knocked == ["127.0.0.1"]


def test_nothing_opens_within_the_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    began = time.monotonic()
    with listener, pytest.raises(connect.NoConnection) as caught:
        connect.connect([(socket.AF_INET, "127.0.0.1")], port, lambda f, a: None, timeout=0.5)
    assert time.monotonic() - began < 3
    assert f"no connection to port {port} within 0.5 s (127.0.0.1: Connection refused)" in str(
        caught.value
    )


def test_a_knock_that_cannot_be_sent_ends_that_address_only():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def knock(family: int, address: str) -> None:
        if family == socket.AF_INET6:
            raise OSError(101, "Network is unreachable")

    targets = [(socket.AF_INET6, "2001:db8::1"), (socket.AF_INET, "127.0.0.1")]
    with listener, connect.connect(targets, port, knock, timeout=5) as conn:
        assert conn.getpeername()[0] == "127.0.0.1"


def test_the_socket_is_handed_over_as_ssh_expects():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    ours, ssh = socket.socketpair()
    with listener, ours, ssh:
        conn = socket.create_connection(listener.getsockname())
        with conn:
            connect.hand_over(conn, out=ours.fileno())
        data, fds, _, _ = socket.recv_fds(ssh, 16, 1)
        assert data == b"\0" and len(fds) == 1
        with socket.socket(fileno=fds[0]) as passed:
            accepted, _ = listener.accept()
            with accepted:
                passed.sendall(b"hello")
                assert accepted.recv(5) == b"hello"


def test_fdpass_needs_a_socket_on_stdout(tmp_path):
    refused = pytest.raises(connect.NoConnection, match="standard output is not a socket")
    with open(tmp_path / "f", "w") as handle, socket.socket() as conn, refused:
        connect.hand_over(conn, out=handle.fileno())


def test_relay_copies_both_ways_and_passes_the_end_on():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    payload = os.urandom(3 * 1024 * 1024)

    def echo() -> None:  # the server: echo everything, close after the client's end
        peer, _ = listener.accept()
        with peer:
            while data := peer.recv(65536):
                peer.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    received = bytearray()

    def feed() -> None:
        with open(stdin_w, "wb") as handle:
            handle.write(payload)

    def drain() -> None:
        with open(stdout_r, "rb") as handle:
            while chunk := handle.read(65536):
                received.extend(chunk)

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for thread in threads:
        thread.start()
    with listener, socket.create_connection(listener.getsockname()) as conn:
        connect.relay(conn, stdin_r, stdout_w)
    os.close(stdout_w)
    os.close(stdin_r)
    for thread in threads:
        thread.join(30)
    assert bytes(received) == payload


CLIENT = """\
[[server]]
name = "home"
host = "203.0.113.5"
user = "alice"
key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
door = "ssh"

[server.doors.ssh]
open = ["2222/tcp"]

[server.doors.web]
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
open = ["443/tcp"]

[[server]]
name = "knockd-box"
host = "198.51.100.9"

[server.doors.ssh]
sequence = ["7000", "8000", "9000:udp"]
open = ["22/tcp"]
"""


def private(tmp_path, text: str) -> str:
    path = tmp_path / "client.toml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_client_config_doors_and_keyless_servers(tmp_path):
    servers = clientconfig.load(private(tmp_path, CLIENT))
    home, box = servers["home"], servers["knockd-box"]
    assert home.door == "ssh" and home.doors["ssh"].port == 2222
    assert [str(p) for p in home.doors["web"].sequence] == ["7000/tcp", "8000/tcp", "9000/udp"]
    assert box.key == b"" and box.user == ""  # plain sequences only: no key needed
    assert [str(p) for p in box.doors["ssh"].sequence] == ["7000/tcp", "8000/tcp", "9000/udp"]
    both = CLIENT.replace('open = ["443/tcp"]', 'open = ["443/tcp"]\nport_range = [1, 2]')
    with pytest.raises(ConfigError, match="a plain sequence or a port_range, not both"):
        clientconfig.load(private(tmp_path, both))
    keyless = CLIENT.replace('sequence = ["7000", "8000", "9000:udp"]\n', "")
    with pytest.raises(ConfigError, match="server is missing 'user'"):
        clientconfig.load(private(tmp_path, keyless))


def test_ssh_config_prints_the_host_block(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    config = private(tmp_path, CLIENT)
    assert cli.main(["ssh-config", "home", "--client-config", config]) == 0
    assert capsys.readouterr().out == (
        "Host home\n"
        "    HostName 203.0.113.5\n"
        "    Port 2222\n"
        f"    ProxyCommand sesame connect --fdpass --client-config {config} home %p\n"
        "    ProxyUseFdpass yes\n"
    )
    assert cli.main(["ssh-config", "knockd-box", "--client-config", config]) == 1
    assert "give --door" in capsys.readouterr().err
    assert cli.main(["ssh-config", "knockd-box", "--door", "ssh", "--client-config", config]) == 0
    out = capsys.readouterr().out
    assert "--door ssh knockd-box %p" in out and "Port" not in out


def test_connect_needs_a_port_it_can_find(tmp_path, capsys):
    config = private(tmp_path, CLIENT)
    argv = ["connect", "--client-config", config, "--door", "phone", "home"]
    assert cli.main(argv) == 1
    assert "give PORT" in capsys.readouterr().err


def test_the_example_client_config_loads(tmp_path):
    example = (Path(__file__).parents[2] / "examples" / "client.toml").read_text()
    servers = clientconfig.load(private(tmp_path, example))
    assert servers["home"].door == "ssh" and servers["home"].doors["ssh"].port == 22
    assert servers["legacy"].doors["ssh"].sequence and not servers["legacy"].key


def test_a_server_may_name_several_hosts_each_knocked(tmp_path):
    path = tmp_path / "client.toml"
    text = '[[server]]\nname = "pair"\nhost = {hosts}\nuser = "alice"\nkey = "{key}"\n'
    key = "A" * 43 + "="
    path.write_text(text.format(hosts='["a.example.org", "192.0.2.7"]', key=key))
    path.chmod(0o600)
    server = clientconfig.load(str(path))["pair"]
    assert (server.host, server.also) == ("a.example.org", ("192.0.2.7",))
    for bad in ("[]", '["a.example.org", 7]'):
        path.write_text(text.format(hosts=bad, key=key))
        with pytest.raises(ConfigError, match="host must be a host name or address, or a list"):
            clientconfig.load(str(path))
