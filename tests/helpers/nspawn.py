"""A Debian 12 machine booted with systemd-nspawn in a lab namespace: a real systemd
to run sesame's unit under. Its root file system is made once with debootstrap, from
the mirror in this machine's apt sources, and kept in CACHE between runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE = Path("/var/cache/sesame-nspawn/rootfs")
PACKAGES = [  # what the package needs, so it installs offline in the machine
    "systemd", "systemd-sysv", "dbus", "python3", "python3-cffi-backend",
    "python3-cryptography", "python3-prometheus-client", "nftables", "libnftables1",
    "adduser", "iproute2", "util-linux",
]  # fmt: skip


def mirror() -> str:
    """The Debian mirror of this machine's apt sources (a ``deb`` line's or a
    ``URIs:`` field's, never a comment's: a commented snapshot address may not answer)."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if source.is_file():
            for line in (raw.strip() for raw in source.read_text().splitlines()):
                if not line.startswith(("deb ", "URIs:")):
                    continue
                found = re.search(r"(https?://\S+/debian)\b(?!-security)", line)
                if found:
                    return found.group(1)
    return "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached root file system, made if it is missing (takes minutes)."""
    if (CACHE / "usr/bin/systemctl").exists() and (CACHE / "usr/sbin/nft").exists():
        return CACHE
    shutil.rmtree(CACHE, ignore_errors=True)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    work = CACHE.with_name("rootfs.new")
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "bookworm",
         str(work), mirror()],
        check=True, capture_output=True,
    )  # fmt: skip
    work.rename(CACHE)
    return CACHE


class Machine:
    """A booted machine: ``run`` executes a command in it, as root."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.leader = 0

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv],
            capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip


def _leader(pid: int) -> int:
    """The machine's PID 1: the child of systemd-nspawn that runs systemd."""
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
            return int(child)
    return 0


@contextmanager
def booted(netns: str, *binds: str) -> Iterator[Machine]:
    """Boot a throwaway copy of the root file system in ``netns`` (binds: read-only
    SRC:DST paths); yields once systemd says the machine is up, powers it off after."""
    argv = [
        "systemd-nspawn", "--quiet", "--boot", "--ephemeral", "--register=no",
        "--keep-unit", "--capability=CAP_NET_ADMIN", f"--network-namespace-path=/run/netns/{netns}",
        "-D", str(rootfs()), *(f"--bind-ro={b}" for b in binds),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    machine = Machine(process)
    try:
        deadline = time.monotonic() + 60
        while not machine.leader:
            assert process.poll() is None, "systemd-nspawn exited"
            assert time.monotonic() < deadline, "the machine did not start"
            machine.leader = _leader(process.pid)
            time.sleep(0.1)
        while True:
            state = machine.run("systemctl", "is-system-running", "--wait", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                break
            assert time.monotonic() < deadline, state.stdout
            time.sleep(0.2)
        yield machine
    finally:
        process.terminate()  # systemd-nspawn powers the machine off
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    os.sync()
