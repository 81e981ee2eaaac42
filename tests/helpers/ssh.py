"""Debian's OpenSSH in the lab: sshd in the server's namespace on port 2222 (behind
the gate), and an unprivileged ssh client in the user's namespace."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sesame.netns import inside
from tests.helpers.lab import require
from tests.helpers.nobody import NOBODY, as_nobody, sesame_argv

PORT = 2222
SSHD_CONFIG = """\
Port {port}
ListenAddress 0.0.0.0
ListenAddress ::
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile {dir}/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel ERROR
"""


@dataclass
class Ssh:
    """A running sshd and a home for the unprivileged client (its key, its configs)."""

    home: Path  # readable by the client's user
    process: subprocess.Popen

    def file(self, name: str, text: str) -> str:
        """A private file of the client's user (its configs hold keys)."""
        path = self.home / name
        path.write_text(text)
        os.chown(path, NOBODY, NOBODY)
        path.chmod(0o600)
        return str(path)

    def ssh(
        self,
        netns: str,
        proxy: list[str],
        command: str,
        fdpass: bool = True,
        stdin: bytes | None = None,
        host: str = "home",
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """``ssh host command`` as nobody, through ``sesame connect PROXY...``."""
        return subprocess.run(
            self.argv(netns, proxy, command, fdpass, host),
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def connect_argv(self) -> list[str]:
        """``sesame connect`` as the client's user (for lab.run)."""
        return [*as_nobody(self.home), *sesame_argv(), "connect"]

    def argv(
        self, netns: str, proxy: list[str], command: str, fdpass: bool = True, host: str = "home"
    ) -> list[str]:
        connect = [*sesame_argv(), "connect", *(["--fdpass"] if fdpass else [])]
        return [
            "ip",
            "netns",
            "exec",
            netns,
            *as_nobody(self.home),
            require("ssh"),
            "-F",
            "none",
            "-i",
            str(self.home / "id"),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ProxyCommand=" + shlex.join([*connect, *proxy, "%p"]),
            "-o",
            f"ProxyUseFdpass={'yes' if fdpass else 'no'}",
            "-p",
            str(PORT),
            f"root@{host}",
            command,
        ]


@contextmanager
def sshd(server_netns: str, tmp: str) -> Iterator[Ssh]:
    """sshd on port 2222 in ``server_netns``, with a key for the client; stopped after."""
    binary = require("sshd")
    keygen = require("ssh-keygen")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation
    home = Path(tempfile.mkdtemp(prefix="sesame-ssh-"))
    home.chmod(0o755)  # the client runs as nobody: it must reach its files
    server = Path(tmp, "sshd")
    server.mkdir()
    for path, kind in ((server / "host_key", "host"), (home / "id", "client")):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", kind, "-f", str(path)])
    os.chown(home / "id", NOBODY, NOBODY)
    (server / "authorized_keys").write_text((home / "id.pub").read_text())
    (server / "config").write_text(SSHD_CONFIG.format(port=PORT, dir=server))
    process = subprocess.Popen(
        ["ip", "netns", "exec", server_netns, binary, "-D", "-e", "-f", str(server / "config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(server_netns, process)
        yield Ssh(home, process)
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def _wait_listening(netns: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while True:
        with inside(netns):
            probe = socket.socket()
        with probe:
            if probe.connect_ex(("127.0.0.1", PORT)) == 0:
                return
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "sshd did not listen"
        time.sleep(0.05)
