"""The kernel tests' lab: a fresh server/user/stranger topology per test, always deleted
(the ``lab`` fixture), and what tests do in it."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sesame.firewall.watch import GRANT_SHARDS
from sesame.lab import DaemonProcess, EchoServer
from sesame.netns import Topology

CONFIG = """\
[server]

[[door]]
name = "ssh"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = {seq_timeout}
open = ["22/tcp"]
open_for = {open_for}
close_sequence = ["9000/tcp", "8000/tcp", "7000/tcp"]
"""

_count = itertools.count()


def require(program: str) -> str:
    """The path of a program the test needs; in CI a missing one is a failure."""
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is not installed")
        pytest.skip(f"{program} is not installed")
    return path


@dataclass
class Lab:
    topo: Topology
    tmp: str
    daemon: DaemonProcess | None = None

    @property
    def server(self):
        return self.topo["server"]

    @property
    def user(self):
        return self.topo["user"]

    @property
    def stranger(self):
        return self.topo["stranger"]

    def write_config(self, text: str) -> str:
        """The server's config, private as one that holds keys must be."""
        path = os.path.join(self.tmp, "sesame.toml")
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        return path

    def serve(self, text: str | None = None, **values) -> DaemonProcess:
        values = {"seq_timeout": 5, "open_for": 30} | values
        path = self.write_config(text if text is not None else CONFIG.format(**values))
        self.daemon = DaemonProcess(self.server.netns, path, "-v").start()
        return self.daemon

    def knock_open(self, *ports: str, ipv6: bool = False) -> int:
        """The user knocks (the door's sequence by default) and the door opens.
        Returns the log mark from before the knock."""
        from sesame.lab import knock_from

        mark = self.daemon.mark()
        server = self.server.ipv6 if ipv6 else self.server.ipv4
        knock_from(self.user.netns, server, *(ports or ("7000/tcp", "8000/tcp", "9000/udp")))
        user = self.user.ipv6 if ipv6 else self.user.ipv4
        self.daemon.wait_for(rf"opened door \S+ to {user}:", 10, since=mark)
        return mark

    def scan(self, netns: str, ports: str) -> None:
        """A sequential SYN scan (nmap -r) of ``ports`` on the server, from ``netns``."""
        nmap = require("nmap")
        self.run(
            netns,
            nmap,
            "-n",
            "-Pn",
            "-sS",
            "-r",
            "-p",
            ports,
            "--max-retries",
            "0",
            "--max-rtt-timeout",
            "100ms",
            self.server.ipv4,
        )

    def sesame(self, netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(netns, sys.executable, "-m", "sesame", *args, check=check)

    def run(self, netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(netns, *argv, check=check)

    def nft(self, *args: str) -> str:
        return self.run(self.server.netns, "nft", *args).stdout

    def grants(self) -> dict[str, float]:
        """Live grant elements ``ADDR PORT/PROTO`` -> seconds left, with ms precision."""
        return grants(self.server.netns)

    def wait_no_grants(self, timeout: float) -> float:
        """Poll the kernel until no grant is left; return when that happened."""
        deadline = time.monotonic() + timeout
        while self.grants():
            if time.monotonic() > deadline:
                raise AssertionError(f"grants still live: {self.grants()}")
            time.sleep(0.05)
        return time.monotonic()


def run(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """``argv`` in ``netns``; with ``check``, AssertionError (with its output) if it fails."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} failed: {result.stdout}{result.stderr}")
    return result


ELEMENT = r"([0-9a-f:.]+) \. (tcp|udp) \. (\d+) timeout \S+ expires (\S+)"


def grants(netns: str) -> dict[str, float]:
    """The live grant elements of sesame's table in ``netns``: ``ADDR PORT/PROTO`` ->
    seconds left, with ms precision."""
    out = {}
    for name in GRANT_SHARDS:
        text = run(netns, "nft", "list", "set", "inet", "sesame", name).stdout
        for m in re.finditer(
            r"([0-9a-f:.]+) \. (tcp|udp) \. (\d+) timeout \S+ expires (\S+)", text
        ):
            out[f"{m.group(1)} {m.group(3)}/{m.group(2)}"] = duration(m.group(4))
    return out


def duration(text: str) -> float:
    """nft's ``1m29s980ms`` as seconds."""
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|d|h|m|s)", text):
        total += int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root")
    require("nft")
    topo = Topology(tag=f"t{os.getpid() % 100000}x{next(_count)}")
    topo.build()
    echo = None
    the_lab = Lab(topo, str(tmp_path))
    try:
        echo = EchoServer(topo["server"].netns, 22)
        yield the_lab
    finally:
        if the_lab.daemon is not None:
            the_lab.daemon.stop()
        if echo is not None:
            echo.close()
        topo.close()
