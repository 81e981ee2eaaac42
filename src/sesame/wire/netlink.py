"""Netlink framing, defined once: the message header, attributes, nfnetlink's
header and batches, acknowledgements and errors, in the kernel's names
(``include/uapi/linux/netlink.h``, ``linux/netfilter/nfnetlink.h``). Pure functions:
the sockets live in :mod:`sesame.firewall.netlink` and :mod:`sesame.sensor.nflog`.
The nftables set-element codec (:mod:`sesame.wire.nftables`) and the NFLOG codec
(:mod:`sesame.wire.nflog`) are built on it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

NETLINK_NETFILTER = 12

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x001
NLM_F_ACK = 0x004
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH: every object, in as many messages as it takes
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNETLINK_V0 = 0

NLMSGHDR = struct.Struct("=IHHII")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid
NLATTR = struct.Struct("=HH")  # nla_len, nla_type
NFGENMSG = struct.Struct("=BBH")  # nfgen_family, version, res_id (big-endian on the wire)


class Header(NamedTuple):
    """One message's header; ``body`` is where its payload starts in the datagram,
    ``end`` where it ends."""

    length: int
    type: int
    flags: int
    seq: int
    pid: int
    body: int
    end: int


def attr(kind: int, data: bytes, nested: bool = False) -> bytes:
    """One attribute (``nested``: it holds attributes), padded to 4 bytes."""
    size = NLATTR.size + len(data)
    kind |= NLA_F_NESTED if nested else 0
    return NLATTR.pack(size, kind) + data + b"\0" * (-size % 4)


def attrs(data: bytes | memoryview) -> Iterator[tuple[int, bytes]]:
    """The attributes in ``data`` as (type without flags, payload); stops at the first
    that does not fit."""
    offset = 0
    while offset + NLATTR.size <= len(data):
        size, kind = NLATTR.unpack_from(data, offset)
        if size < NLATTR.size or offset + size > len(data):
            return
        yield kind & NLA_TYPE_MASK, bytes(data[offset + NLATTR.size : offset + size])
        offset += (size + 3) & ~3


def nfgenmsg(family: int, res_id: int = 0) -> bytes:
    """nfnetlink's header after the netlink header (``res_id``: a group or subsystem)."""
    return NFGENMSG.pack(family, NFNETLINK_V0, socket.htons(res_id))


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A netlink message of type ``kind`` carrying ``body``."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def subsystem(subsys: int, kind: int) -> int:
    """The message type of an nfnetlink subsystem's message."""
    return (subsys << 8) | kind


def batch(messages: list[bytes], seq: int, subsys: int) -> bytes:
    """Messages wrapped in one nfnetlink batch of ``subsys`` (one transaction)."""
    begin = message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, nfgenmsg(0, subsys))
    end = message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, nfgenmsg(0, subsys))
    return begin + b"".join(messages) + end


def headers(data: bytes | memoryview) -> Iterator[Header]:
    """The messages in one datagram, in order; stops at one whose length is wrong
    (yielded with ``length`` 0, so the caller can count it)."""
    offset, end = 0, len(data)
    while offset + NLMSGHDR.size <= end:
        length, kind, flags, seq, pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > end:
            yield Header(0, kind, flags, seq, pid, offset, end)
            return
        yield Header(length, kind, flags, seq, pid, offset + NLMSGHDR.size, offset + length)
        offset += (length + 3) & ~3


def error_code(body: bytes | memoryview) -> int:
    """An NLMSG_ERROR's code: 0 (an acknowledgement) or a negative errno."""
    return int(struct.unpack_from("=i", body)[0]) if len(body) >= 4 else -1
