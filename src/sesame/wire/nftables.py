"""nftables' set elements and change notifications over netlink, in the kernel's
names (``include/uapi/linux/netfilter/nf_tables.h``), on the framing of
:mod:`sesame.wire.netlink`. Pure: the socket is :mod:`sesame.firewall.netlink`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sesame.basics import Port, Proto
from sesame.wire import netlink as nl

NFNL_SUBSYS_NFTABLES = 10
NFNLGRP_NFTABLES = 7  # the multicast group of nftables' change notifications
NFPROTO_INET = 1

# enum nf_tables_msg_types (the ones sesame sends or reads)
NFT_MSG_NEWTABLE = 0
NFT_MSG_NEWSET = 9
NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM, NFT_MSG_DELSETELEM = 12, 13, 14
NFT_MSG_NEWGEN = 15  # ends the notifications of one transaction; says which process made it
# Not a message type: NEWSETELEM with NLM_F_EXCL, which the kernel refuses (EEXIST)
# where an element of that key already is.
CREATE_SETELEM = 0x100 | NFT_MSG_NEWSETELEM

# enum nft_set_elem_list_attributes
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
# enum nft_set_elem_attributes
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_SET_ELEM_EXPIRATION = 5
NFTA_SET_ELEM_USERDATA = 6
NFTA_DATA_VALUE = 1
NFTA_GEN_PROC_PID = 2
NFTNL_UDATA_SET_ELEM_COMMENT = 0  # libnftnl's tag for an element comment in its user data

IPPROTO: dict[Proto, int] = {"tcp": 6, "udp": 17}
PROTO: dict[int, Proto] = {6: "tcp", 17: "udp"}


def port_value(port: Port) -> bytes:
    """``inet_proto . inet_service`` as nftables lays out a concatenation: each field
    in 4 bytes (the protocol first, the port in network order)."""
    return bytes([IPPROTO[port.proto], 0, 0, 0]) + port.number.to_bytes(2, "big") + b"\0\0"


def element(
    key: bytes,
    timeout_ms: int | None = None,
    comment: str | None = None,
    data: bytes | None = None,
) -> bytes:
    """One NFTA_LIST_ELEM: a key, and optionally a timeout, a comment and (in a map)
    the data the key maps to."""
    fields = nl.attr(NFTA_SET_ELEM_KEY, nl.attr(NFTA_DATA_VALUE, key), nested=True)
    if data is not None:
        fields += nl.attr(NFTA_SET_ELEM_DATA, nl.attr(NFTA_DATA_VALUE, data), nested=True)
    if timeout_ms is not None:
        fields += nl.attr(NFTA_SET_ELEM_TIMEOUT, struct.pack(">Q", timeout_ms))
    if comment is not None:
        text = comment.encode() + b"\0"
        udata = bytes([NFTNL_UDATA_SET_ELEM_COMMENT, len(text)]) + text
        fields += nl.attr(NFTA_SET_ELEM_USERDATA, udata)
    return nl.attr(NFTA_LIST_ELEM, fields, nested=True)


def setelem(kind: int, table: str, name: str, elements: Sequence[bytes], seq: int) -> bytes:
    """A NEW/GET/DELSETELEM request for ``elements`` of set ``name``, acknowledged
    (CREATE_SETELEM: a NEWSETELEM that adds only elements that are not there)."""
    exclusive, kind = kind == CREATE_SETELEM, kind & 0xFF
    body = (
        nl.nfgenmsg(NFPROTO_INET)
        + nl.attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
        + nl.attr(NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0")
        + nl.attr(NFTA_SET_ELEM_LIST_ELEMENTS, b"".join(elements), nested=True)
    )
    flags = nl.NLM_F_REQUEST | nl.NLM_F_ACK
    flags |= nl.NLM_F_CREATE if kind == NFT_MSG_NEWSETELEM else 0
    flags |= nl.NLM_F_EXCL if exclusive else 0
    return nl.message(nl.subsystem(NFNL_SUBSYS_NFTABLES, kind), flags, seq, body)


def dump(table: str, name: str, seq: int) -> bytes:
    """A GETSETELEM request for every element of set ``name``: the kernel answers in
    NEWSETELEM messages, then NLMSG_DONE."""
    body = (
        nl.nfgenmsg(NFPROTO_INET)
        + nl.attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
        + nl.attr(NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0")
    )
    kind = nl.subsystem(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETSETELEM)
    return nl.message(kind, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, body)


def batch(messages: list[bytes], seq: int) -> bytes:
    """Messages in one nftables transaction (all or nothing)."""
    return nl.batch(messages, seq, NFNL_SUBSYS_NFTABLES)


@dataclass(frozen=True, slots=True)
class Elem:
    """One element as the kernel lists it: key, data, timeout and time left (ms),
    comment."""

    key: bytes
    data: bytes = b""
    timeout: int | None = None
    expiration: int | None = None
    comment: str | None = None


_ATTR = struct.Struct("=HH").unpack_from
_U64 = struct.Struct(">Q").unpack_from


def elements(body: bytes) -> Iterator[Elem]:
    """The elements of one NEWSETELEM message's payload (after its netlink header), in
    one pass: a dump (:func:`dump`) of a grant set can hold 100,000 of them."""
    for start, stop in _regions(body):
        yield _elem(body, start, stop)


def group(
    body: bytes,
    size: int,
    into: dict[bytes, list[tuple[str, bytes]]],
    name: str,
    home: tuple[int, int, list[tuple[str, bytes]]] | None = None,
) -> None:
    """Each element of one NEWSETELEM message of set ``name``, its attributes unread,
    into ``into`` by the first ``size`` bytes of its key (a grant element's source), as
    (``name``, attributes): a listing of 100,000 is sorted so in a fraction of a second;
    :func:`read` reads one when it is needed. An element without a key that long (the
    kernel puts the key first) is left out. With ``home`` (mask, value, strays): an
    element whose source's last byte under the mask is not the value is also put in
    strays (it belongs in another set)."""
    mask, value, strays = home if home is not None else (0, 0, [])
    for start, stop in _regions(body):
        first, kind = _ATTR(body, start) if stop - start >= 4 else (0, 0)
        if kind & nl.NLA_TYPE_MASK == NFTA_SET_ELEM_KEY and first >= 8 + size:
            key = body[start + 8 : start + 8 + size]  # inside its NFTA_DATA_VALUE
            item = (name, body[start:stop])
            into.setdefault(key, []).append(item)
            if key[-1] & mask != value:
                strays.append(item)


def read(item: bytes) -> Elem:
    """One element's attributes (as :func:`group` keeps them)."""
    return _elem(item, 0, len(item))


def _regions(body: bytes) -> Iterator[tuple[int, int]]:
    """Where each element's attributes are in one NEWSETELEM message."""
    end, offset = len(body), nl.NFGENMSG.size
    while offset + 4 <= end:  # the list's attributes: table, set, elements
        size, kind = _ATTR(body, offset)
        if size < 4 or offset + size > end:
            return
        if kind & nl.NLA_TYPE_MASK == NFTA_SET_ELEM_LIST_ELEMENTS:
            at, stop = offset + 4, offset + size
            while at + 4 <= stop:  # each NFTA_LIST_ELEM
                length, _ = _ATTR(body, at)
                if length < 4 or at + length > stop:
                    break
                yield at + 4, at + length
                at += (length + 3) & ~3
        offset += (size + 3) & ~3


def _elem(body: bytes, at: int, stop: int) -> Elem:
    key = data = b""
    timeout = expiration = None
    comment = None
    while at + 4 <= stop:
        length, kind = _ATTR(body, at)
        if length < 4 or at + length > stop:
            break
        kind &= nl.NLA_TYPE_MASK
        if kind in (NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA) and length >= 8:
            inner, _ = _ATTR(body, at + 4)  # its NFTA_DATA_VALUE
            value = body[at + 8 : at + 4 + min(inner, length - 4)]
            key, data = (value, data) if kind == NFTA_SET_ELEM_KEY else (key, value)
        elif kind == NFTA_SET_ELEM_TIMEOUT and length >= 12:
            timeout = _U64(body, at + 4)[0]
        elif kind == NFTA_SET_ELEM_EXPIRATION and length >= 12:
            expiration = _U64(body, at + 4)[0]
        elif (
            kind == NFTA_SET_ELEM_USERDATA
            and length >= 6
            and body[at + 4] == NFTNL_UDATA_SET_ELEM_COMMENT
        ):
            text = body[at + 6 : at + 6 + min(body[at + 5], length - 6)]
            comment = text.rstrip(b"\0").decode("utf-8", "replace")
        at += (length + 3) & ~3
    return Elem(key, data, timeout, expiration, comment)


def parse_hit(body: bytes) -> tuple[Port | None, float] | None:
    """The first port (None if the data is not one) and the age in seconds of the
    element in one NEWSETELEM answer of a hits map; None if it holds no element."""
    for elem in elements(body):
        if len(elem.data) < 6 or elem.timeout is None or elem.expiration is None:
            return None
        proto, number = PROTO.get(elem.data[0]), int.from_bytes(elem.data[4:6], "big")
        port = Port(proto, number) if proto and number else None
        return port, max(0, elem.timeout - elem.expiration) / 1000
    return None


@dataclass(frozen=True, slots=True)
class Notice:
    """One nftables change notification: what changed (NEW/DEL TABLE, CHAIN, RULE,
    SET, SETELEM, ...: the message type), in which family, table and set; or, for
    NFT_MSG_NEWGEN, the process that made the transaction (``pid``)."""

    kind: int
    family: int = 0
    table: str = ""
    set: str = ""
    pid: int = 0


def notices(data: bytes, table: str) -> Iterator[Notice]:
    """The nftables notifications about ``table`` (any family) in one datagram read
    from the NFNLGRP_NFTABLES group, and every NEWGEN. Every object message carries its
    table as its first attribute and, for sets and their elements, the set's name as
    attribute 2; the rest is skipped cheaply, as other programs may change thousands
    of elements at once."""
    name = table.encode() + b"\0"
    mine = nl.attr(NFTA_SET_ELEM_LIST_TABLE, name)[: nl.NLATTR.size + len(name)]
    for head in nl.headers(data):
        if not head.length:
            return
        start = head.body + nl.NFGENMSG.size
        if head.type >> 8 != NFNL_SUBSYS_NFTABLES or start > head.end:
            continue
        message = head.type & 0xFF
        if message == NFT_MSG_NEWGEN:
            pid = dict(nl.attrs(data[start : head.end])).get(NFTA_GEN_PROC_PID, b"")
            yield Notice(message, pid=int.from_bytes(pid, "big") if len(pid) == 4 else 0)
        elif data[start : start + len(mine)] == mine:
            fields = dict(nl.attrs(data[start : head.end]))
            named = fields.get(NFTA_SET_ELEM_LIST_SET, b"") if message >= NFT_MSG_NEWSET else b""
            yield Notice(
                message,
                data[head.body],
                table,
                named.split(b"\0", 1)[0].decode("ascii", "replace"),
            )
