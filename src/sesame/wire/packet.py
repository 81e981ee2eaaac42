"""Decode the IPv4/IPv6 + TCP/UDP headers of a packet the kernel logged.

Strangers control every byte here: any fault raises :class:`RemoteError` with a
short reason, never anything else.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from sesame.engine.events import Address
from sesame.errors import RemoteError
from sesame.ports import Port, Proto

TCP, UDP = 6, 17
SYN, ACK = 0x02, 0x10


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
        if fragment & 0x1FFF:
            raise RemoteError("ipv4 fragment")
        source: Address = IPv4Address(packed)
    elif version == 6:
        if len(data) < 40:
            raise RemoteError("short ipv6 header")
        proto, packed, destination = _V6.unpack_from(data, 6)
        source = IPv6Address(packed)
        offset = 40
    else:
        raise RemoteError("not ip")
    if proto != TCP and proto != UDP:
        raise RemoteError("not tcp or udp")
    if len(data) < offset + (20 if proto == TCP else 8):
        raise RemoteError("short tcp header" if proto == TCP else "short udp header")
    dport = _DPORT.unpack_from(data, offset + 2)[0]
    if dport == 0:
        raise RemoteError("port 0")
    if proto == TCP:
        return Packet(source, _port("tcp", dport), data[offset + 13], b"", destination)
    return Packet(source, _port("udp", dport), 0, data[offset + 8 :], destination)


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
