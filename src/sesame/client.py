"""Sending knocks (one TCP SYN or one UDP datagram per port, like knockd's client),
SPA datagrams and one-time sequences."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Sequence
from ipaddress import ip_network

from sesame.basics import Address, Port
from sesame.engine import totp
from sesame.wire import spa, stun


def resolve(host: str, family: int = socket.AF_UNSPEC) -> tuple[int, str]:
    """The first address of ``host`` (IPv4 or IPv6) as (family, address)."""
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
    fam, _, _, _, sockaddr = infos[0]
    return fam, str(sockaddr[0])


def addresses(host: str, family: int = socket.AF_UNSPEC) -> list[tuple[int, str]]:
    """Every address of ``host`` as (family, address), IPv6 first, then alternating
    (as "happy eyeballs" orders them); ValueError if it has none."""
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
    seen: dict[tuple[int, str], None] = {}
    for fam, _, _, _, sockaddr in infos:
        seen.setdefault((fam, str(sockaddr[0])), None)
    six = [a for a in seen if a[0] == socket.AF_INET6]
    four = [a for a in seen if a[0] != socket.AF_INET6]
    out: list[tuple[int, str]] = []
    for i in range(max(len(six), len(four))):
        out += six[i : i + 1] + four[i : i + 1]
    return out


def hit(family: int, address: str, port: Port) -> None:
    """One knock: a TCP connect attempt abandoned at once, or a 1-byte datagram."""
    if port.proto == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\0", (address, port.number))
        return
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        # connect_ex: the SYN is on its way (EINPROGRESS); closing now sends nothing more.
        sock.connect_ex((address, port.number))


def knock(family: int, address: str, ports: Sequence[Port], delay_ms: int = 0) -> None:
    """Knock on ``ports`` in order, waiting ``delay_ms`` between knocks."""
    for i, port in enumerate(ports):
        if i and delay_ms:
            time.sleep(delay_ms / 1000)
        hit(family, address, port)


def bind(sock: socket.socket, source: str | None, port: int = 0) -> None:
    """Send from ``source`` (and ``port``); the one thing a client may lack the right to
    do (a port under 1024), or ask wrongly (an address this host does not have), said
    plainly. Nothing to do without either."""
    if not source and not port:
        return
    try:
        sock.bind((source or "", port))
    except PermissionError:
        raise ValueError(
            f"sending from port {port} needs root or CAP_NET_BIND_SERVICE (ports under 1024);"
            " choose a port from 1024 up, or none"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"--source {source}: not an address of this host") from None
        raise ValueError(f"cannot send from {source or '*'} port {port}: {exc.strerror}") from None


def local_address(family: int, address: str, port: int, source: str | None) -> str:
    """The address this host sends from to reach ``address`` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        bind(sock, source)
        sock.connect((address, port))
        return str(sock.getsockname()[0])


def spa_packet(
    user: str, key: bytes, door: str, address: Address, wall: float | None = None
) -> bytes:
    """One SPA datagram asking to open ``door`` for ``address``, stamped now."""
    stamp = int(time.time() if wall is None else wall)
    return spa.encode(user, spa.cipher(key), door, address, stamp, os.urandom(spa.NONCE))


def send_spa(
    family: int,
    address: str,
    port: int,
    payload: bytes,
    source: str | None = None,
    source_port: int = 0,
) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        bind(sock, source, source_port)
        sock.sendto(payload, (address, port))


def one_time_sequence(
    key: bytes, door: str, port_range: tuple[int, int], length: int, wall: float | None = None
) -> tuple[Port, ...]:
    """The user's one-time sequence for ``door`` in the current 30-second step."""
    step = totp.step_of(time.time() if wall is None else wall)
    return totp.sequence(totp.subkey(key), door, step, port_range, length)


# Private address space: behind it, a server sees another address (NAT).
PRIVATE = tuple(
    ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def is_private(address: Address) -> bool:
    """Is ``address`` in private (RFC 1918, ULA) or carrier-grade NAT space?"""
    return any(address in net for net in PRIVATE if net.version == address.version)


def stun_address(spec: str, family: int, timeout: float = 1.0, tries: int = 3) -> str:
    """Ask the STUN server of ``spec`` ("stun:HOST[:PORT]") which address it sees this
    host as, over ``family``; ValueError if it does not answer."""
    host, port = stun.target(spec)
    fam, address = resolve(host, family)
    transaction = os.urandom(12)
    with socket.socket(fam, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _ in range(tries):
            sock.sendto(stun.request(transaction), (address, port))
            try:
                while True:
                    data = sock.recv(2048)
                    with contextlib.suppress(ValueError):
                        return str(stun.mapped_address(data, transaction))
            except TimeoutError:
                continue
    raise ValueError(f"the STUN server {host} did not answer")
