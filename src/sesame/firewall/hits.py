"""Reads one element of the first-knock maps (``hits4``/``hits6``) straight from the
kernel: which first port a source hit and how long ago.

libnftables would list the whole map to answer (milliseconds with thousands of
elements); one NFT_MSG_GETSETELEM over netlink asks for just the one key (about
ten microseconds). The request and answer codecs are pure functions; the socket is
:class:`HitReader`.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address

from sesame.engine.events import Address
from sesame.errors import FirewallError
from sesame.ports import Port, Proto

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM = 12, 13
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NFPROTO_INET = 1
NLA_F_NESTED = 0x8000
# Attributes: the element list, one element, its key, data, timeout and expiration.
LIST_TABLE, LIST_SET, LIST_ELEMENTS = 1, 2, 3
LIST_ELEM = 1
ELEM_KEY, ELEM_DATA, ELEM_TIMEOUT, ELEM_EXPIRATION = 1, 2, 4, 5
DATA_VALUE = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_PROTOS: dict[int, Proto] = {6: "tcp", 17: "udp"}


def _attr(kind: int, data: bytes, nested: bool = False) -> bytes:
    size = _NLATTR.size + len(data)
    return _NLATTR.pack(size, kind | (NLA_F_NESTED if nested else 0)) + data + b"\0" * (-size % 4)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        size, kind = _NLATTR.unpack_from(data, offset)
        if size < 4:
            return
        yield kind & ~NLA_F_NESTED, data[offset + 4 : offset + size]
        offset += (size + 3) & ~3


def request(table: str, address: Address, seq: int) -> bytes:
    """Ask for the element of ``address`` in the table's hits map of its family."""
    name = "hits4" if isinstance(address, IPv4Address) else "hits6"
    key = _attr(ELEM_KEY, _attr(DATA_VALUE, address.packed), nested=True)
    body = (
        struct.pack("=BBH", NFPROTO_INET, 0, 0)
        + _attr(LIST_TABLE, table.encode() + b"\0")
        + _attr(LIST_SET, name.encode() + b"\0")
        + _attr(LIST_ELEMENTS, _attr(LIST_ELEM, key, nested=True), nested=True)
    )
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM
    flags = NLM_F_REQUEST | NLM_F_ACK
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def parse(message: bytes) -> tuple[Port | None, float] | None:
    """The first port (None if the kernel's data is not one) and the age in seconds
    of the element in one NEWSETELEM answer; None if the answer holds no element."""
    for kind, value in _attrs(message[4:]):  # after the nfgenmsg header
        if kind != LIST_ELEMENTS:
            continue
        for _, element in _attrs(value):
            fields = dict(_attrs(element))
            data = dict(_attrs(fields.get(ELEM_DATA, b""))).get(DATA_VALUE, b"")
            if len(data) < 6 or ELEM_TIMEOUT not in fields or ELEM_EXPIRATION not in fields:
                return None
            timeout = int.from_bytes(fields[ELEM_TIMEOUT][:8], "big")
            left = int.from_bytes(fields[ELEM_EXPIRATION][:8], "big")
            proto, number = _PROTOS.get(data[0]), int.from_bytes(data[4:6], "big")
            port = Port(proto, number) if proto and number else None
            return port, max(0, timeout - left) / 1000
    return None


class HitReader:
    """A netlink socket for reading first-knock elements of one table."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)  # the kernel answers at once

    def get(self, address: Address) -> tuple[Port | None, float] | None:
        """(first port, age in seconds) of ``address``'s element, or None."""
        self._seq += 1
        try:
            self.sock.send(request(self.table, address, self._seq))
            found = None
            while True:
                data = self.sock.recv(65536)
                offset = 0
                while offset + _NLMSGHDR.size <= len(data):
                    length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                    body = data[offset + _NLMSGHDR.size : offset + length]
                    offset += max(_NLMSGHDR.size, (length + 3) & ~3)
                    if seq != self._seq:
                        continue  # a late answer to an earlier request
                    if kind == NLMSG_ERROR:
                        error = struct.unpack_from("=i", body)[0] if len(body) >= 4 else -1
                        if error and error != -errno.ENOENT:
                            raise FirewallError(f"reading hits: {errno.errorcode.get(-error)}")
                        return found
                    if kind & 0xFF == NFT_MSG_NEWSETELEM:
                        found = parse(body)
        except OSError as exc:
            raise FirewallError(f"reading hits: {exc}") from None

    def close(self) -> None:
        self.sock.close()
