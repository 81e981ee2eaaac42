"""Packet and NFLOG decoding: correct on real layouts, never unwinding on junk."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
import socket
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.basics import Host4, Host6, Port, host, parse_port
from sesame.errors import RemoteError
from sesame.wire import decode, fwknop, nflog
from sesame.wire import netlink as nl
from sesame.wire.packet import plain_udp
from tests.helpers.packets import ipv4, ipv6, logged_message, tcp, udp


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


def ext(next_header, kind, body=b""):
    """One IPv6 extension header (padded to its unit) before ``next_header``."""
    if kind == 44:  # fragment: offset and flags in ``body`` (2 bytes), 8 bytes in all
        return bytes([next_header, 0]) + body + b"\0" * 4
    if kind == 51:  # authentication: length in 4-byte units, minus 2
        data = body.ljust(10, b"\0")  # at least the SPI and sequence number
        data += b"\0" * (-(len(data) + 2) % 4)
        return bytes([next_header, (len(data) + 2) // 4 - 2]) + data
    data = body + b"\0" * (-(len(body) + 2) % 8)
    return bytes([next_header, (len(data) + 2) // 8 - 1]) + data


@pytest.mark.parametrize(
    "chain",
    [[0], [60], [43], [51], [44], [0, 60], [0, 43, 60, 51], [60] * 10],
    ids=["hop", "dest", "routing", "auth", "first-fragment", "hop-dest", "four", "ten"],
)
@pytest.mark.parametrize("proto", [6, 17])
def test_ipv6_extension_headers_are_walked_as_the_kernel_walks_them(chain, proto):
    transport = tcp(7000) if proto == 6 else udp(62201, b"spa")
    headers = b""
    following = proto
    for kind in reversed(chain):
        body = b"\0\0" if kind == 44 else b"\x01\x04" + b"\0" * 4 * (kind % 3)
        headers = ext(following, kind, body) + headers
        following = kind
    p = decode(ipv6("2001:db8::2", "2001:db8::1", chain[0], headers + transport))
    assert p.source == ip_address("2001:db8::2")
    assert p.port == Port("tcp" if proto == 6 else "udp", 7000 if proto == 6 else 62201)
    assert p.payload == (b"" if proto == 6 else b"spa")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (ipv6("2001:db8::2", "2001:db8::1", 44, ext(17, 44, b"\0\x08") + udp(9)), "ipv6 fragment"),
        (ipv6("2001:db8::2", "2001:db8::1", 44, ext(17, 44, b"\0\x01") + udp(9)), "ipv6 fragment"),
        (ipv6("2001:db8::2", "2001:db8::1", 0, ext(59, 0)), "not tcp or udp"),
        (ipv6("2001:db8::2", "2001:db8::1", 0, ext(50, 0) + b"\0" * 20), "not tcp or udp"),
        (ipv6("2001:db8::2", "2001:db8::1", 60, b"\x06\x08"), "short ipv6 extension header"),
        (ipv6("2001:db8::2", "2001:db8::1", 60, b"\x06\xff" + b"\0" * 6), "short tcp header"),
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(7000), frag=0x2000), "ipv4 fragment"),
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(7000)[:4] + b"\0\x07\0\0"), "bad udp length"),
    ],
    ids=["later", "more", "none", "esp", "short", "past-end", "ipv4-more", "udp-length"],
)
def test_what_the_kernel_would_not_take_as_tcp_or_udp(data, reason):
    with pytest.raises(RemoteError) as caught:
        decode(data)
    assert caught.value.reason == reason


def test_udp_payload_ends_where_the_udp_length_says():
    p = decode(ipv4("192.0.2.1", "192.0.2.2", 17, udp(9000, b"spa") + b"trailing"))
    assert p.payload == b"spa"


@given(
    st.lists(st.sampled_from([0, 43, 44, 51, 60]), max_size=6),
    st.binary(max_size=64),
    st.integers(0, 255),
)
def test_arbitrary_extension_chains_never_raise_anything_else(chain, junk, last):
    data = ipv6("2001:db8::2", "2001:db8::1", chain[0] if chain else last, junk)
    with contextlib.suppress(RemoteError):
        decode(data)


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


@st.composite
def near_plain(draw):
    """A plain UDP datagram (IPv4 or IPv6) with up to three of the bytes that decide
    set to values that matter, maybe cut short."""
    six = draw(st.booleans())
    payload = draw(st.binary(max_size=40))
    build = ipv6 if six else ipv4
    data = bytearray(
        build(
            "2001:db8::2" if six else "192.0.2.1",
            "2001:db8::1" if six else "192.0.2.2",
            17,
            udp(62201, payload),
        )
    )
    at = 40 if six else 20  # the UDP header
    fields = [0, 6, at + 2, at + 3, at + 4, at + 5] + ([] if six else [7, 9])
    values = st.sampled_from([0, 1, 7, 8, 0x20, 0x40, 0x45, 0x46, 0x60, 6, 17, 44, 60, 255])
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.sampled_from(fields))] = draw(st.one_of(values, st.integers(0, 255)))
    return bytes(data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data)


@settings(max_examples=1500)
@given(st.one_of(near_plain(), st.binary(max_size=80)))
def test_the_first_look_at_a_udp_datagram_agrees_with_decode(data):
    """plain_udp takes a shortcut only where decode gives the same port and payload."""
    found = plain_udp(data)
    if found is not None:
        packet = decode(data)
        assert packet.port == Port("udp", found[0]) and packet.payload == found[1]


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(62201, b"spa") + b"more"), (62201, b"spa")),
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(62201, b"spa"), frag=0x4000), (62201, b"spa")),
        (ipv6("2001:db8::2", "2001:db8::1", 17, udp(62201, b"spa")), (62201, b"spa")),
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(62201), frag=0x2000), None),  # MF
        (ipv4("192.0.2.1", "192.0.2.2", 17, udp(0)), None),  # decode's "port 0"
        (ipv4("192.0.2.1", "192.0.2.2", 6, tcp(22)), None),
        (b"\x46" + ipv4("192.0.2.1", "192.0.2.2", 17, udp(62201))[1:] + bytes(4), None),
        (ipv6("2001:db8::2", "2001:db8::1", 60, ext(17, 60) + udp(62201, b"spa")), None),
    ],
)
def test_the_first_look_takes_plain_udp_only(data, found):
    assert plain_udp(data) == found


def test_nflog_packet_messages_are_split_and_decoded():
    packet = ipv4("198.51.100.2", "198.51.100.1", 6, tcp(7000))
    data = logged_message(5155, packet) + logged_message(5155, packet, b"x")
    items = list(nflog.messages(data))
    assert [type(i) for i in items] == [nflog.Logged, nflog.Logged]
    assert items[0].payload == packet
    assert items[0].group == 5155
    assert items[1].prefix == b"x"
    [none] = nflog.messages(logged_message(5155, packet, b""))  # the kernel's "\\0"
    assert none.prefix == b""


def test_a_sieve_is_shown_the_packets_without_a_prefix_and_what_it_takes_is_none():
    packets = [ipv4("198.51.100.2", "198.51.100.1", 17, udp(62201, bytes([n]))) for n in range(4)]
    data = b"".join(
        logged_message(5155, packet, b"noise" if n == 2 else b"")
        for n, packet in enumerate(packets)
    )
    shown: list[bytes] = []

    def sieve(payload: bytes) -> bool:
        shown.append(payload)
        return payload == packets[1]

    items = list(nflog.messages(data, sieve))
    assert shown == [packets[0], packets[1], packets[3]]  # the prefixed one is not shown
    assert items[1] is None
    assert [i.payload for i in items if i is not None] == [packets[0], packets[2], packets[3]]


_ATTRIBUTES = st.one_of(
    st.tuples(st.sampled_from([1, 3, 4, 6, 8, 15, 16, 17]), st.binary(max_size=20)),
    st.tuples(  # a prefix: none (the kernel's "\0"), empty, or one
        st.just(nflog.NFULA_PREFIX), st.sampled_from([b"\0", b"", b"k\0", b"\x01", b"noise\0"])
    ),
    st.tuples(  # kinds with flags the kernel never sets
        st.sampled_from([nflog.NFULA_PAYLOAD | 0x8000, nflog.NFULA_PREFIX | 0x4000]),
        st.sampled_from([b"\0", b"xy"]),
    ),
)


def _message(
    group: int,
    before: list[tuple[int, bytes]],
    payload: bytes | None,
    size: int | None,
    cut: int | None,
) -> bytes:
    """An NFULNL_MSG_PACKET: attributes, then maybe a payload (``size``: one that is
    not its own), maybe cut short after ``cut`` bytes of attributes."""
    body = b"".join(nl.attr(k, v) for k, v in before)
    if payload is not None:
        made = nl.attr(nflog.NFULA_PAYLOAD, payload)
        body += made if size is None else struct.pack("=H", size) + made[2:]
    body = nl.nfgenmsg(socket.AF_INET, group) + body[:cut]
    return nl.message(nl.subsystem(nflog.NFNL_SUBSYS_ULOG, nflog.NFULNL_MSG_PACKET), 0, 0, body)


_PREFIXES = st.sampled_from([None, b"\0", b"", b"k\0", b"\x01", b"noise\0"])
_VARIANTS = st.tuples(  # what messages of one shape differ in
    st.sampled_from([5155, 5156]),
    _PREFIXES,
    st.one_of(st.binary(max_size=30), st.binary(max_size=30), st.none()),  # the payload
    st.one_of(*[st.none()] * 5, st.integers(0, 80)),  # its size, if not its own
    st.one_of(*[st.none()] * 5, st.integers(0, 60)),  # cut short
)


def _shaped(skeleton: list[tuple[int, bytes]], variants: list[tuple]) -> list[bytes]:
    """Messages with the same attributes before the payload but for the prefix."""
    return [
        _message(
            group,
            skeleton[:1] + ([] if p is None else [(nflog.NFULA_PREFIX, p)]) + skeleton[1:],
            *rest,
        )
        for group, p, *rest in variants
    ]


_POOLS = st.builds(
    lambda *pools: [m for pool in pools for m in pool],
    st.builds(
        _shaped, st.lists(_ATTRIBUTES, max_size=4), st.lists(_VARIANTS, min_size=2, max_size=5)
    ),
    st.builds(_shaped, st.lists(_ATTRIBUTES, max_size=4), st.lists(_VARIANTS, max_size=2)),
)


@settings(max_examples=500)
@given(_POOLS, st.data())
def test_a_sockets_shapes_split_as_the_walk_does(pool, data):
    """Shapes (one unpack for a message shaped as the last learned) yields what the
    walk yields, and shows the sieve what the walk shows it, whatever the messages:
    of one shape over and over (a flood), of others between, malformed."""
    _split_alike(
        [b"".join(data.draw(st.lists(st.sampled_from(pool), max_size=70))) for _ in range(4)]
    )


def test_a_learned_shape_is_not_taken_for_a_packet_with_a_prefix_or_other_attributes():
    """What a flood without a prefix teaches is not applied to packets that differ
    only where the walk would see it: a one-character prefix in the place of none,
    a longer one in the same room, a hardware address of another length."""
    hw = (8, bytes(8))
    flood = _message(5155, [(1, bytes(4)), (nflog.NFULA_PREFIX, b"\0"), hw], b"flood", None, None)
    others = [
        _message(5155, [(1, bytes(4)), (nflog.NFULA_PREFIX, prefix), hw], b"knock", None, None)
        for prefix in (b"\x01", b"k\0", b"kn\0", b"")
    ]
    others.append(
        _message(
            5156, [(1, bytes(4)), (nflog.NFULA_PREFIX, b"\0"), (8, bytes(4))], b"x", None, None
        )
    )
    shown = _split_alike([flood * 3 + other + flood for other in others])
    assert shown.count(b"flood") == 4 * len(others) and b"knock" in shown and b"x" in shown
    items = list(nflog.messages(flood + b"".join(others), None, nflog.Shapes()))
    assert [i.prefix for i in items] == [b"", b"\x01", b"k", b"kn", b"", b""]


def _split_alike(datagrams: list[bytes]) -> list[bytes]:
    """Split the datagrams in turn with one Shapes and with the walk: the same items,
    the same payloads shown to the sieve (returned)."""
    shapes, walked, shaped = nflog.Shapes(), list[bytes](), list[bytes]()

    def sieve(into: list[bytes]) -> nflog.Sieve:
        def look(payload: bytes) -> bool:
            into.append(payload)
            return len(payload) % 2 == 0

        return look

    for datagram in datagrams:
        assert list(map(repr, nflog.messages(datagram, sieve(shaped), shapes))) == list(
            map(repr, nflog.messages(datagram, sieve(walked)))
        )  # (repr: errors are equal when their reasons are)
    assert shaped == walked
    return walked


def test_nflog_ack():
    ack = struct.pack("=IHHII", 36, nl.NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", -16)
    ack += b"\0" * 16
    [item] = nflog.messages(ack)
    assert item == nflog.Ack(7, -16)


def test_config_message_layout():
    msg = nflog.config_message(5155, 3, bind=True)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and seq == 3
    assert kind == (nflog.NFNL_SUBSYS_ULOG << 8) | nflog.NFULNL_MSG_CONFIG
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_ACK
    assert msg[18:20] == (5155).to_bytes(2, "big")


@given(st.binary(max_size=200))
def test_arbitrary_netlink_bytes_never_raise(data):
    for item in nflog.messages(data):
        assert isinstance(item, nflog.Logged | nflog.Ack | RemoteError)


@given(
    st.sampled_from([None, *fwknop.HMAC_TYPES]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz,/0123456789", min_size=1, max_size=900),
)
def test_every_fwknop_datagram_has_a_size_and_first_character_the_kernel_passes(hmac, access):
    """The kernel's exact checks of fwknop's format (sesame.firewall.ruleset) never
    drop a datagram a stanza could accept."""
    wire = fwknop.encode(
        "alice",
        "192.0.2.1," + access,
        b"k" * 32,
        None if hmac is None else b"h" * 64,
        hmac_type=hmac or "sha256",
        timestamp=1_800_000_000,
    )
    if fwknop.MIN_SIZE <= len(wire) <= fwknop.MAX_SIZE:
        assert len(wire) in fwknop.lengths(fwknop.HMAC_TYPES[hmac] if hmac else 0)
        assert wire[0] in fwknop.FIRST


@given(st.integers(fwknop.MIN_SIZE, fwknop.MAX_SIZE), st.binary(min_size=1, max_size=1))
def test_what_the_kernel_drops_of_fwknops_format_could_never_decrypt(size, first):
    """Conversely: a size outside fwknop.lengths, or another first character, is
    refused by the decryption itself (so dropping it in the kernel changes nothing)."""
    import base64

    text = (base64.b64encode(first * size)[:size]).replace(b"=", b"A")
    verifier = fwknop.Verifier(None)
    if size in fwknop.lengths(0) and text[:1] in [bytes([c]) for c in fwknop.FIRST]:
        return
    with pytest.raises(RemoteError, match=r"fwknop (base64|ciphertext)"):
        verifier.open(text, b"k" * 32)


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 2))
def test_an_address_whose_hash_is_kept_is_the_same_key_as_ipaddress_s(address, looks):
    """A packet's source (Host4, Host6) and the ipaddress object of the same address
    are equal, hash alike (however often asked), and find each other in a set; str,
    order and the family are ipaddress's."""
    kept = host(address)
    assert isinstance(kept, Host4 if address.version == 4 else Host6)
    for _ in range(looks):
        hash(kept)
    assert kept == address and hash(kept) == hash(address)
    assert kept in {address} and address in {kept}
    assert str(kept) == str(address) and not kept < address and not address < kept
    assert isinstance(kept, IPv4Address if address.version == 4 else IPv6Address)


def test_decoded_sources_keep_their_hash_and_scoped_addresses_stay_as_they_are():
    v4 = decode(ipv4("192.0.2.7", "192.0.2.1", 6, tcp(22)))
    v6 = decode(ipv6("2001:db8::7", "2001:db8::1", 6, tcp(22)))
    assert type(v4.source) is Host4 and type(v6.source) is Host6
    scoped = ip_address("fe80::1%eth0")
    assert host(scoped) is scoped


@given(st.sampled_from(["tcp", "udp"]), st.integers(1, 65535), st.integers(1, 65535))
def test_a_port_keeps_its_hash_and_equal_ports_hash_alike(proto, number, other):
    port = Port(proto, number)
    assert port == parse_port(f"{number}/{proto}") and hash(port) == hash(
        parse_port(f"{number}/{proto}")
    )
    moved = dataclasses.replace(port, number=other)
    assert (moved == Port(proto, other)) and hash(moved) == hash(Port(proto, other))
    assert "_hash" not in repr(port)
    assert pickle.loads(pickle.dumps(port)) == port and copy.copy(port) == port
