"""Packets built by hand, as the kernel logs them."""

from __future__ import annotations

import struct
from ipaddress import ip_address

from sesame.wire import nflog


def ipv4(src, dst, proto, transport, frag=0):
    header = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(transport),
        1,
        frag,
        64,
        proto,
        0,
        ip_address(src).packed,
        ip_address(dst).packed,
    )
    return header + transport


def ipv6(src, dst, proto, transport):
    header = struct.pack(
        ">IHBB16s16s",
        6 << 28,
        len(transport),
        proto,
        64,
        ip_address(src).packed,
        ip_address(dst).packed,
    )
    return header + transport


def tcp(dport, flags=0x02):
    return struct.pack(">HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, flags, 1024, 0, 0)


def udp(dport, payload=b"\0"):
    return struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload


def logged_message(group, payload, prefix=b"sesame"):
    def attr(kind, value):
        size = 4 + len(value)
        return struct.pack("=HH", size, kind) + value + b"\0" * (-size % 4)

    body = struct.pack("=BB", 2, 0) + group.to_bytes(2, "big")
    body += attr(nflog.NFULA_PACKET_HDR, b"\x08\x00\x01\x00")
    body += attr(nflog.NFULA_PREFIX, prefix + b"\0")
    body += attr(nflog.NFULA_PAYLOAD, payload)
    header = struct.pack("=IHHII", 16 + len(body), nflog.NFNL_SUBSYS_ULOG << 8, 0, 0, 0)
    return header + body
