"""Hosts in network namespaces, for the lab and the kernel tests.

``Topology`` builds a server and clients joined by a bridge in the server's
namespace, with IPv4 and IPv6 addresses, and removes all of it on ``close``.
``inside(name)`` moves the calling thread into a namespace for a moment: sockets
made there stay there, so one Python process can act as every host.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sesame.errors import SesameError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block in network namespace ``name`` (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def ip(*args: str) -> None:
    """Run ``ip ARGS`` (argv, no shell); raise SesameError with its message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SesameError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Host:
    netns: str
    ipv4: str
    ipv6: str


@dataclass
class Topology:
    """A server and named clients on one link: 198.51.100.0/24 and 2001:db8::/64."""

    tag: str
    clients: tuple[str, ...] = ("user", "stranger")
    hosts: dict[str, Host] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)

    def build(self) -> Topology:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        server = self._namespace("server", 1)
        ip("-n", server.netns, "link", "add", "br0", "type", "bridge")
        ip("-n", server.netns, "addr", "add", f"{server.ipv4}/24", "dev", "br0")
        ip("-n", server.netns, "addr", "add", f"{server.ipv6}/64", "dev", "br0", "nodad")
        ip("-n", server.netns, "link", "set", "br0", "up")
        for i, name in enumerate(self.clients):
            client = self._namespace(name, i + 2)
            port = f"p{i}"
            ip(
                "link",
                "add",
                port,
                "netns",
                server.netns,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                client.netns,
            )
            ip("-n", server.netns, "link", "set", port, "master", "br0", "up")
            ip("-n", client.netns, "addr", "add", f"{client.ipv4}/24", "dev", "eth0")
            ip("-n", client.netns, "addr", "add", f"{client.ipv6}/64", "dev", "eth0", "nodad")
            ip("-n", client.netns, "link", "set", "eth0", "up")

    def internal(
        self,
        role: str = "internal",
        link: str = "int0",
        net: tuple[str, str] = ("10.0.5.", "fd00:5::"),
        number: int = 20,
        route_back: bool = True,
    ) -> Host:
        """A host behind the server on a second link (``link`` on the server's side,
        the server's address there ending in 1), the server routing between the two
        links. Without ``route_back`` the host has no default route: its replies to
        the clients cannot find the way unless the server masquerades."""
        server = self.hosts["server"]
        host = self._namespace(role, number, net)
        peer = ["name", "eth0", "netns", host.netns]
        ip("link", "add", link, "netns", server.netns, "type", "veth", "peer", *peer)
        ip("-n", server.netns, "addr", "add", f"{net[0]}1/24", "dev", link)
        ip("-n", server.netns, "addr", "add", f"{net[1]}1/64", "dev", link, "nodad")
        ip("-n", server.netns, "link", "set", link, "up")
        ip("-n", host.netns, "addr", "add", f"{host.ipv4}/24", "dev", "eth0")
        ip("-n", host.netns, "addr", "add", f"{host.ipv6}/64", "dev", "eth0", "nodad")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        if route_back:
            ip("-n", host.netns, "route", "add", "default", "via", f"{net[0]}1")
            ip("-n", host.netns, "-6", "route", "add", "default", "via", f"{net[1]}1")
        for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
            with inside(server.netns), open(f"/proc/sys/{key}", "w") as handle:
                handle.write("1\n")
        return host

    def _namespace(
        self, role: str, number: int, net: tuple[str, str] = ("198.51.100.", "2001:db8::")
    ) -> Host:
        name = f"sesame-{self.tag}-{role}"
        ip("netns", "add", name)
        self.made.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        host = Host(name, f"{net[0]}{number}", f"{net[1]}{number}")
        self.hosts[role] = host
        return host

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def close(self) -> None:
        """Delete every namespace this topology made (its links go with them)."""
        while self.made:
            name = self.made.pop()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)

    def __enter__(self) -> Topology:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()
