"""Netlink messages captured from the real kernel and from nft's own requests
(``python -m tests.golden.capture`` wrote tests/golden/netlink.json), decoded, and
checked against what sesame's encoders lay out: not the encoders against themselves."""

from __future__ import annotations

import json
from ipaddress import ip_address
from pathlib import Path

from sesame.basics import Port
from sesame.wire import netlink as nl
from sesame.wire import nflog, nftables
from sesame.wire.packet import decode

GOLDEN = {
    k: [bytes.fromhex(m) for m in v] if isinstance(v, list) else bytes.fromhex(v)
    for k, v in json.loads(Path("tests/golden/netlink.json").read_text()).items()
}
A = ip_address("192.0.2.7")
KEY = A.packed + nftables.port_value(Port("tcp", 22))


def tree(data: bytes, nested: frozenset[int] = frozenset()) -> list[tuple[int, object]]:
    """Attributes as a sorted tree (nested ones by the flag nft sets on them)."""
    out: list[tuple[int, object]] = []
    offset = 0
    while offset + 4 <= len(data):
        size, kind = nl.NLATTR.unpack_from(data, offset)
        value = data[offset + 4 : offset + size]
        out.append((kind & nl.NLA_TYPE_MASK, tree(value) if kind & nl.NLA_F_NESTED else value))
        offset += (size + 3) & ~3
    return sorted(out, key=repr)


def only(messages: list[bytes], kind: int) -> bytes:
    [found] = [m for m in messages if nl.NLMSGHDR.unpack_from(m)[1] & 0xFF == kind]
    return found


def body(message: bytes) -> bytes:
    return message[nl.NLMSGHDR.size :]


def test_nfts_request_for_a_grant_is_what_sesame_sends_attribute_for_attribute():
    theirs = only(GOLDEN["nft_add_grant"], nftables.NFT_MSG_NEWSETELEM)
    [elem] = nftables.elements(body(theirs))
    assert elem == nftables.Elem(KEY, timeout=30000, comment="ssh alice")
    ours = nftables.setelem(
        nftables.NFT_MSG_NEWSETELEM, "t", "grants4", [nftables.element(KEY, 30000, "ssh alice")], 1
    )
    _, kind, flags, _, _ = nl.NLMSGHDR.unpack_from(theirs)
    assert nl.NLMSGHDR.unpack_from(ours)[1] == kind
    assert flags & nl.NLM_F_CREATE and nl.NLMSGHDR.unpack_from(ours)[2] & nl.NLM_F_CREATE
    assert body(ours)[:4] == body(theirs)[:4]  # nfgenmsg: family inet
    # nft names the set by id too (NFTA_SET_ELEM_LIST_SET_ID, for a set made in the
    # same batch); sesame's sets exist already. Everything else is the same.
    set_id = 4
    theirs_tree = [a for a in tree(body(theirs)[4:]) if a[0] != set_id]
    assert tree(body(ours)[4:]) == theirs_tree


def test_nfts_request_to_delete_a_grant_is_byte_for_byte_sesames():
    theirs = only(GOLDEN["nft_delete_grant"], nftables.NFT_MSG_DELSETELEM)
    ours = nftables.setelem(nftables.NFT_MSG_DELSETELEM, "t", "grants4", [nftables.element(KEY)], 1)
    assert body(ours) == body(theirs)


def test_nfts_batch_framing_is_sesames():
    begin, *_, end = GOLDEN["nft_add_grant"]
    framed = nftables.batch([], 0)
    assert framed[: len(begin)] == begin
    ours = framed[len(begin) :]
    assert (ours[4:8], ours[12:]) == (end[4:8], end[12:])  # nft numbers it after its messages


def test_the_kernels_notice_of_a_new_grant_names_table_set_and_element():
    data = GOLDEN["kernel_notice_of_add"]
    notices = list(nftables.notices(data, "t"))
    assert notices[0] == nftables.Notice(
        nftables.NFT_MSG_NEWSETELEM, nftables.NFPROTO_INET, "t", "grants4"
    )
    head = next(nl.headers(data))
    [elem] = nftables.elements(data[head.body : head.end])
    assert (elem.key, elem.timeout, elem.comment) == (KEY, 30000, "ssh alice")
    assert elem.expiration is not None and 0 < elem.expiration <= 30000
    assert list(nftables.notices(data, "other")) == [n for n in notices if n.table == ""]


def test_the_kernels_answer_for_a_first_knock_reads_as_port_and_age():
    data = GOLDEN["kernel_hit_answer"]
    head = next(nl.headers(data))
    port, age = nftables.parse_hit(data[head.body : head.end])
    assert port == Port("tcp", 7000)
    assert 0.0 <= age < 10.0
    not_a_port = data.replace(bytes([0x1B, 0x58]), bytes(2))  # 7000 -> 0
    assert nftables.parse_hit(not_a_port[head.body : head.end]) == (None, age)
    assert nftables.parse_hit(nl.nfgenmsg(1)) is None


def test_the_kernels_nflog_message_carries_group_prefix_and_packet():
    [logged] = [
        m for m in nflog.messages(GOLDEN["kernel_nflog_packet"]) if isinstance(m, nflog.Logged)
    ]
    assert (logged.group, logged.prefix) == (77, b"noise")
    packet = decode(logged.payload)
    assert (packet.port, packet.payload) == (Port("udp", 7000), b"golden")
    assert packet.source == ip_address("127.0.0.1")
