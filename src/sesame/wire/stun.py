"""A STUN binding request and its answer (RFC 5389), all a client behind NAT needs to
learn the address a server on the other side sees it as.

The request is a 20-byte header: type 0x0001, length 0, the magic cookie, a random
12-byte transaction id. The answer (type 0x0101) carries XOR-MAPPED-ADDRESS (the
address XORed with the cookie, and for IPv6 with the transaction id too), or the older
MAPPED-ADDRESS. Anything else is refused with ValueError: the answer comes from the
network.
"""

from __future__ import annotations

import re
import struct
from ipaddress import IPv4Address, IPv6Address

from sesame.basics import Address

PORT = 3478
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101
MAGIC_COOKIE = 0x2112A442
MAPPED_ADDRESS, XOR_MAPPED_ADDRESS = 0x0001, 0x0020
_HEADER = struct.Struct("!HHI12s")


_TARGET = re.compile(
    r"stun:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)|([0-9A-Fa-f:]+))(?::(\d{1,5}))?"
)


def target(spec: str) -> tuple[str, int]:
    """``stun:HOST``, ``stun:HOST:PORT``, ``stun:[IPV6]:PORT`` or ``stun:IPV6`` as
    (host, port); ValueError for anything else."""
    found = _TARGET.fullmatch(spec)
    if found is None:
        raise ValueError(f'{spec!r} is not "stun:HOST[:PORT]"')
    bracketed, name, bare = found.group(1, 2, 3)
    port = int(found.group(4) or PORT)
    if not 1 <= port <= 65535:
        raise ValueError(f"{spec!r}: the port is out of range")
    return bracketed or name or bare, port


def request(transaction: bytes) -> bytes:
    """A binding request with the 12-byte ``transaction`` id."""
    if len(transaction) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    return _HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, transaction)


def mapped_address(data: bytes, transaction: bytes) -> Address:
    """The address a binding success answer to ``transaction`` reports."""
    if len(data) < _HEADER.size:
        raise ValueError("STUN answer too short")
    kind, length, cookie, answered = _HEADER.unpack_from(data)
    if kind != BINDING_SUCCESS or cookie != MAGIC_COOKIE or answered != transaction:
        raise ValueError("not an answer to this STUN request")
    if _HEADER.size + length > len(data) or length % 4:
        raise ValueError("STUN answer of a wrong length")
    found: Address | None = None
    offset, end = _HEADER.size, _HEADER.size + length
    while offset + 4 <= end:
        attribute, size = struct.unpack_from("!HH", data, offset)
        value = data[offset + 4 : offset + 4 + size]
        if len(value) != size:
            raise ValueError("STUN attribute past the end")
        if attribute == XOR_MAPPED_ADDRESS:
            return _address(value, MAGIC_COOKIE.to_bytes(4, "big") + transaction)
        if attribute == MAPPED_ADDRESS and found is None:
            found = _address(value, bytes(16))
        offset += 4 + size + (-size % 4)
    if found is None:
        raise ValueError("STUN answer without a mapped address")
    return found


def _address(value: bytes, mask: bytes) -> Address:
    if len(value) == 8 and value[1] == 1:
        return IPv4Address(bytes(a ^ b for a, b in zip(value[4:8], mask[:4], strict=True)))
    if len(value) == 20 and value[1] == 2:
        return IPv6Address(bytes(a ^ b for a, b in zip(value[4:20], mask[:16], strict=True)))
    raise ValueError("STUN address of an unknown family")
