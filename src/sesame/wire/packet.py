"""Decode the IPv4/IPv6 + TCP/UDP headers of a packet the kernel logged.

Strangers control every byte here: any fault raises :class:`RemoteError` with a
short reason, never anything else. IPv6 extension headers are walked as the kernel
walks them (``ipv6_find_hdr``, which nftables' ``meta l4proto`` and ``th dport``
use): hop-by-hop, routing, destination options and authentication headers are
skipped, a first fragment is read through, and no next header, ESP or a later
fragment is not TCP or UDP.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from sesame.basics import Address, Host4, Host6, Port, Proto
from sesame.errors import RemoteError

TCP, UDP = 6, 17


class Packet(NamedTuple):
    """What sesame needs of one logged packet (a tuple: built once per packet, fast)."""

    source: Address
    port: Port
    tcp_flags: int  # 0 for UDP
    payload: bytes  # the UDP payload (empty for TCP)
    to: bytes = b""  # the destination address, packed (built into an address on demand)

    @property
    def destination(self) -> Address:
        return IPv4Address(self.to) if len(self.to) == 4 else IPv6Address(self.to)


_V4 = struct.Struct("!HxB2x4s4s")  # from byte 6: flags and fragment offset, protocol, addresses
_V6 = struct.Struct("!B1x16s16s")  # from byte 6: next header, hop limit, addresses
_DPORT = struct.Struct("!H")
_UDP = struct.Struct("!HH")  # from byte 2: destination port, length
MORE_FRAGMENTS = 0x2000
# IPv6 extension headers the kernel skips to find the transport header.
HOP, ROUTING, FRAGMENT, AUTH, DESTINATION = 0, 43, 44, 51, 60
_SKIPPED = frozenset((HOP, ROUTING, FRAGMENT, AUTH, DESTINATION))


def _ipv6_transport(data: bytes, proto: int) -> tuple[int, int]:
    """Walk the extension headers after the fixed IPv6 header: (protocol, offset)."""
    offset, size = 40, len(data)
    while proto in _SKIPPED:
        if size < offset + 8:
            raise RemoteError("short ipv6 extension header")
        if proto == FRAGMENT:
            if int.from_bytes(data[offset + 2 : offset + 4], "big") & 0xFFF9:
                raise RemoteError("ipv6 fragment")  # not reassembled: never a whole packet
            length = 8
        elif proto == AUTH:
            length = (data[offset + 1] + 2) * 4
        else:
            length = (data[offset + 1] + 1) * 8
        proto = data[offset]
        offset += length
    return proto, offset


def decode(data: bytes) -> Packet:
    """Decode a network-layer packet (starting at the IP header)."""
    if not data:
        raise RemoteError("empty packet")
    version = data[0] >> 4
    if version == 4:
        offset = (data[0] & 0x0F) * 4
        if offset < 20 or len(data) < offset:
            raise RemoteError("short ipv4 header")
        fragment, proto, packed, destination = _V4.unpack_from(data, 6)
        if fragment & (MORE_FRAGMENTS | 0x1FFF):
            raise RemoteError("ipv4 fragment")  # not reassembled: never a whole packet
        source: Address = Host4(packed)
    elif version == 6:
        if len(data) < 40:
            raise RemoteError("short ipv6 header")
        proto, packed, destination = _V6.unpack_from(data, 6)
        source = Host6(packed)
        offset = 40
        if proto in _SKIPPED:
            proto, offset = _ipv6_transport(data, proto)
    else:
        raise RemoteError("not ip")
    if proto != TCP and proto != UDP:
        raise RemoteError("not tcp or udp")
    if len(data) < offset + (20 if proto == TCP else 8):
        raise RemoteError("short tcp header" if proto == TCP else "short udp header")
    if proto == TCP:
        dport = _DPORT.unpack_from(data, offset + 2)[0]
        if dport == 0:
            raise RemoteError("port 0")
        return Packet(source, _port("tcp", dport), data[offset + 13], b"", destination)
    dport, length = _UDP.unpack_from(data, offset + 2)
    if dport == 0:
        raise RemoteError("port 0")
    if length < 8:
        raise RemoteError("bad udp length")
    return Packet(source, _port("udp", dport), 0, data[offset + 8 : offset + length], destination)


def plain_udp(data: bytes) -> tuple[int, bytes] | None:
    """The destination port and payload of a plain UDP datagram (IPv4 without options
    or fragmentation, IPv6 without extension headers), as :func:`decode` gives them;
    None for anything else, and for what decode would refuse: then decode decides.
    (The cheap first look at a flood's datagrams: no addresses or ports built.)"""
    size = len(data)
    if size >= 28 and data[0] == 0x45:  # IPv4, a 20-byte header
        if data[9] != UDP or data[6] & 0x3F or data[7]:  # MF, an offset (DF may be set)
            return None
        offset = 20
    elif size >= 48 and data[0] >> 4 == 6 and data[6] == UDP:
        offset = 40
    else:
        return None
    dport = data[offset + 2] << 8 | data[offset + 3]
    length = data[offset + 4] << 8 | data[offset + 5]
    if dport == 0 or length < 8:
        return None
    return dport, data[offset + 8 : offset + length]


_PORTS: dict[tuple[str, int], Port] = {}


def _port(proto: Proto, number: int) -> Port:
    """Ports are few and immutable: share them (a flood builds no new ones)."""
    key = (proto, number)
    port = _PORTS.get(key)
    if port is None:
        if len(_PORTS) > 4096:
            _PORTS.clear()
        port = _PORTS[key] = Port(proto, number)
    return port
