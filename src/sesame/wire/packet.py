"""Decode the IPv4/IPv6 + TCP/UDP headers of a packet the kernel logged.

Strangers control every byte here: any fault raises :class:`RemoteError` with a
short reason, never anything else.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from sesame.engine.events import Address
from sesame.errors import RemoteError
from sesame.ports import Port, Proto

TCP, UDP = 6, 17
SYN, ACK = 0x02, 0x10
_PROTOS: dict[int, Proto] = {TCP: "tcp", UDP: "udp"}


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


def decode(data: bytes) -> Packet:
    """Decode a network-layer packet (starting at the IP header)."""
    if not data:
        raise RemoteError("empty packet")
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or len(data) < ihl:
            raise RemoteError("short ipv4 header")
        if int.from_bytes(data[6:8], "big") & 0x1FFF:
            raise RemoteError("ipv4 fragment")
        proto = data[9]
        source: Address = IPv4Address(data[12:16])
        destination = bytes(data[16:20])
        offset = ihl
    elif version == 6:
        if len(data) < 40:
            raise RemoteError("short ipv6 header")
        proto = data[6]
        source = IPv6Address(bytes(data[8:24]))
        destination = bytes(data[24:40])
        offset = 40
    else:
        raise RemoteError("not ip")
    name = _PROTOS.get(proto)
    if name is None:
        raise RemoteError("not tcp or udp")
    transport = data[offset:]
    if len(transport) < (20 if proto == TCP else 8):
        raise RemoteError(f"short {name} header")
    dport = int.from_bytes(transport[2:4], "big")
    if dport == 0:
        raise RemoteError("port 0")
    if proto == TCP:
        return Packet(source, _port("tcp", dport), transport[13], b"", destination)
    return Packet(source, _port("udp", dport), 0, bytes(transport[8:]), destination)


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
