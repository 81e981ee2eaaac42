"""Sending knocks: one TCP SYN or one UDP datagram per port, like knockd's client."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from sesame.ports import Port


def resolve(host: str, family: int = socket.AF_UNSPEC) -> tuple[int, str]:
    """The first address of ``host`` (IPv4 or IPv6) as (family, address)."""
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
    fam, _, _, _, sockaddr = infos[0]
    return fam, str(sockaddr[0])


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
