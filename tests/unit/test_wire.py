"""Packet and NFLOG decoding: correct on real layouts, never unwinding on junk."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesame.errors import RemoteError
from sesame.ports import Port
from sesame.wire import decode, nflog


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


def test_ipv4_tcp_syn():
    p = decode(ipv4("198.51.100.2", "198.51.100.1", 6, tcp(7000)))
    assert p.source == ip_address("198.51.100.2")
    assert p.port == Port("tcp", 7000)
    assert p.tcp_flags == 0x02


def test_ipv6_udp_payload():
    p = decode(ipv6("2001:db8::2", "2001:db8::1", 17, udp(9000, b"hello")))
    assert p.source == ip_address("2001:db8::2")
    assert p.port == Port("udp", 9000)
    assert p.payload == b"hello"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty packet"),
        (b"\x45" + b"\0" * 10, "short ipv4 header"),
        (ipv4("192.0.2.1", "192.0.2.2", 1, b"\0" * 8), "not tcp or udp"),
        (ipv4("192.0.2.1", "192.0.2.2", 6, b"\0" * 10), "short tcp header"),
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(7000), frag=5), "ipv4 fragment"),
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(0)), "port 0"),
        (b"\x60" + b"\0" * 20, "short ipv6 header"),
        (b"\x10" * 40, "not ip"),
    ],
)
def test_malformed_packets_raise_remote_errors(data, reason):
    with pytest.raises(RemoteError) as caught:
        decode(data)
    assert caught.value.reason == reason


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise_anything_else(data):
    with contextlib.suppress(RemoteError):
        decode(data)


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


def test_nflog_packet_messages_are_split_and_decoded():
    packet = ipv4("198.51.100.2", "198.51.100.1", 6, tcp(7000))
    data = logged_message(5155, packet) + logged_message(5155, packet, b"x")
    items = list(nflog.messages(data))
    assert [type(i) for i in items] == [nflog.Logged, nflog.Logged]
    assert items[0].payload == packet
    assert items[0].group == 5155
    assert items[1].prefix == b"x"


def test_nflog_ack():
    ack = struct.pack("=IHHII", 36, nflog.NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", -16)
    ack += b"\0" * 16
    [item] = nflog.messages(ack)
    assert item == nflog.Ack(7, -16)


def test_config_message_layout():
    msg = nflog.config_message(5155, 3, bind=True)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and seq == 3
    assert kind == (nflog.NFNL_SUBSYS_ULOG << 8) | nflog.NFULNL_MSG_CONFIG
    assert flags == nflog.NLM_F_REQUEST | nflog.NLM_F_ACK
    assert msg[18:20] == (5155).to_bytes(2, "big")


@given(st.binary(max_size=200))
def test_arbitrary_netlink_bytes_never_raise(data):
    for item in nflog.messages(data):
        assert isinstance(item, nflog.Logged | nflog.Ack | RemoteError)
