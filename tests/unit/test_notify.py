"""Telling systemd the daemon's state: datagrams on a socket the test owns."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from sesame.service.notify import Notifier


@pytest.fixture
def systemd(tmp_path):
    """A notification socket, as systemd's, and a reader of what arrives."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)

    def read() -> dict[str, str]:
        data = sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    yield path, read
    sock.close()


def test_ready_reloading_and_stopping_are_sent(systemd):
    path, read = systemd
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("0 live grants")
    assert read() == {"READY": "1", "STATUS": "0 live grants"}
    notifier.reloading()
    sent = read()
    assert sent["RELOADING"] == "1" and int(sent["MONOTONIC_USEC"]) > 0
    notifier.stopping()
    assert read() == {"STOPPING": "1"}
    notifier.close()


def test_the_watchdog_is_pinged_at_half_its_interval(systemd):
    path, read = systemd
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert notifier.interval == 2.0 and notifier.wait(100.0) == 0.0
    notifier.ping(100.0, lambda: "alive")
    assert read() == {"WATCHDOG": "1", "STATUS": "alive"}
    assert notifier.wait(100.5) == 1.5
    notifier.ping(101.0, lambda: "too soon")  # not due: nothing is sent
    notifier.ping(102.0, lambda: "again")
    assert read() == {"WATCHDOG": "1", "STATUS": "again"}
    notifier.close()


def test_a_watchdog_meant_for_another_process_is_not_ours(systemd):
    path, _ = systemd
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
    notifier = Notifier(env)
    assert os.getpid() != 1 and notifier.interval is None
    notifier.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails():
    notifier = Notifier({})
    notifier.ready("x")
    notifier.ping(0.0, lambda: "x")
    assert notifier.sock is None and notifier.wait(0.0) is None


def test_a_socket_that_is_gone_is_said_once_and_never_stops_the_daemon(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="sesame"):
        notifier.ready("x")
        notifier.stopping()
    notifier.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot notify systemd at {tmp_path / 'gone'}: No such file or directory"
    ]


def test_an_abstract_socket_name_is_understood():
    name = f"sesame-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    with sock:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready("x")
        notifier.close()
        assert sock.recv(100) == b"READY=1\nSTATUS=x\n"
