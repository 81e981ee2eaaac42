"""Hand-made packets, for the hostile half of the lab: any source, any flags, any
checksum, IPv4 options, IPv6 extension headers, fragments. Used by the reliability
suite and the kernel tests; sent from inside a namespace with a raw socket (the
kernel fills in nothing but the IPv4 header checksum and length)."""

from __future__ import annotations

import contextlib
import socket
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from sesame.netns import inside

TCP, UDP = 6, 17
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
HOP, ROUTING, FRAGMENT, DESTINATION = 0, 43, 44, 60


def sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp(
    src: bytes, dst: bytes, sport: int, dport: int, flags: int = SYN, *, good: bool = True
) -> bytes:
    """A TCP header (no options) from packed ``src`` to ``dst``; ``good=False`` gives
    it a wrong checksum."""
    head = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 1024, 0, 0)
    check = fold(sum16(_pseudo(src, dst, TCP, len(head)) + head)) ^ (0 if good else 0x5555)
    return head[:16] + struct.pack("!H", check) + head[18:]


def udp(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes = b"", *, good: bool = True
) -> bytes:
    length = 8 + len(payload)
    head = struct.pack("!HHHH", sport, dport, length, 0)
    check = fold(sum16(_pseudo(src, dst, UDP, length) + head + payload)) or 0xFFFF
    if not good:
        check = check ^ 0x5555 or 1
    return head[:6] + struct.pack("!H", check) + payload


def ipv4(
    src: bytes, dst: bytes, proto: int, body: bytes, *, options: bytes = b"", frag: int = 0
) -> bytes:
    """An IPv4 packet; ``options`` are padded to 4 bytes; ``frag`` is the flags and
    fragment offset field."""
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(body), 0, frag, 64, proto, 0, src, dst
    )
    check = fold(sum16(head + options))
    return head[:10] + struct.pack("!H", check) + head[12:] + options + body


def ipv6(src: bytes, dst: bytes, next_header: int, body: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), next_header, 64, src, dst) + body


def extension(kind: int, next_header: int, size: int = 8) -> bytes:
    """An IPv6 extension header of ``size`` bytes (a multiple of 8) of padding options;
    a fragment header says: first and last fragment (a whole packet)."""
    if kind == FRAGMENT:
        return bytes([next_header, 0, 0, 0]) + b"\0\0\0\x01"
    pad = size - 2
    return bytes([next_header, size // 8 - 1]) + bytes([1, pad - 2]) + b"\0" * (pad - 2)


def packet(
    source: str,
    destination: str,
    proto: int,
    dport: int,
    *,
    flags: int = SYN,
    payload: bytes = b"",
    good: bool = True,
    headers: tuple[int, ...] = (),
    sport: int = 40000,
) -> bytes:
    """A whole TCP or UDP packet between two addresses of one family; ``headers``:
    IPv6 extension headers to put before the transport header."""
    src, dst = ip_address(source).packed, ip_address(destination).packed
    if proto == TCP:
        body = tcp(src, dst, sport, dport, flags, good=good)
    else:
        body = udp(src, dst, sport, dport, payload, good=good)
    if len(src) == 4:
        return ipv4(src, dst, proto, body)
    following = proto
    for kind in reversed(headers):
        body = extension(kind, following) + body
        following = kind
    return ipv6(src, dst, following, body)


class Sender:
    """A raw socket in a namespace for one family; sends whole IP packets."""

    def __init__(self, netns: str, family: int = socket.AF_INET) -> None:
        with inside(netns):
            self.sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.family = family

    def send(self, data: bytes) -> None:
        """Send one packet to the destination written in it."""
        if self.family == socket.AF_INET:
            target = str(IPv4Address(data[16:20]))
        else:
            target = str(IPv6Address(data[24:40]))
        with contextlib.suppress(BlockingIOError):
            self.sock.sendto(data, (target, 0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Frames:
    """Whole Ethernet frames from a namespace's interface (AF_PACKET): nothing is
    filled in or checked on the way out, so truncated and malformed packets reach the
    other side's kernel exactly as made."""

    def __init__(self, netns: str, interface: str, destination_mac: str) -> None:
        with inside(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.sock.bind((interface, 0))
            source = self.sock.getsockname()[4]
        self.head = {
            version: bytes.fromhex(destination_mac.replace(":", "")) + source + kind
            for version, kind in ((4, b"\x08\x00"), (6, b"\x86\xdd"))
        }

    def send(self, packet: bytes) -> None:
        version = 6 if packet and packet[0] >> 4 == 6 else 4
        with contextlib.suppress(BlockingIOError, OSError):
            self.sock.send(self.head[version] + packet)

    def close(self) -> None:
        self.sock.close()
