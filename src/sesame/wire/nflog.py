"""The NFLOG netlink protocol (nfnetlink_log), as pure encoders and decoders.

The kernel's ``log group N`` statement sends each logged packet to the netlink
socket bound to group N. These functions build the configuration requests and
split the kernel's messages, in the kernel's names
(``include/uapi/linux/netfilter/nfnetlink_log.h``), on the framing of
:mod:`sesame.wire.netlink`; the socket itself lives in :mod:`sesame.sensor`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, overload

from sesame.errors import RemoteError
from sesame.wire import netlink as nl

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1

# Configuration attributes and commands.
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2

# Packet attributes.
NFULA_PACKET_HDR = 1
NFULA_IFINDEX_INDEV = 4
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10

_GROUP = struct.Struct("!H")


def config_message(
    group: int,
    seq: int,
    *,
    bind: bool | None = None,
    copy_range: int | None = None,
    qthresh: int | None = None,
    timeout: int | None = None,
    bufsize: int | None = None,
    ack: bool = True,
) -> bytes:
    """One NFULNL_MSG_CONFIG request for ``group`` (acknowledged by the kernel, unless
    ``ack`` is false)."""
    attrs = b""
    if bind is not None:
        command = NFULNL_CFG_CMD_BIND if bind else NFULNL_CFG_CMD_UNBIND
        attrs += nl.attr(NFULA_CFG_CMD, struct.pack("=B", command))
    if copy_range is not None:
        attrs += nl.attr(NFULA_CFG_MODE, struct.pack(">IBB", copy_range, NFULNL_COPY_PACKET, 0))
    if bufsize is not None:
        attrs += nl.attr(NFULA_CFG_NLBUFSIZ, struct.pack(">I", bufsize))
    if timeout is not None:
        attrs += nl.attr(NFULA_CFG_TIMEOUT, struct.pack(">I", timeout))
    if qthresh is not None:
        attrs += nl.attr(NFULA_CFG_QTHRESH, struct.pack(">I", qthresh))
    flags = nl.NLM_F_REQUEST | (nl.NLM_F_ACK if ack else 0)
    kind = nl.subsystem(NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG)
    return nl.message(kind, flags, seq, nl.nfgenmsg(0, group) + attrs)


class Logged(NamedTuple):
    """One packet the kernel logged: the group, the prefix and the packet bytes."""

    group: int
    prefix: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    """The kernel's answer to a request: ``error`` is 0 or a negative errno."""

    seq: int
    error: int


_PACKET = nl.subsystem(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET)


Sieve = Callable[[bytes], bool]


@overload
def messages(data: bytes | memoryview) -> Iterator[Logged | Ack | RemoteError]: ...
@overload
def messages(
    data: bytes | memoryview, sieve: Sieve | None
) -> Iterator[Logged | Ack | RemoteError | None]: ...
def messages(
    data: bytes | memoryview, sieve: Sieve | None = None
) -> Iterator[Logged | Ack | RemoteError | None]:
    """Split one netlink datagram into logged packets and acks.

    A malformed message is yielded as a :class:`RemoteError` (not raised), so the
    caller counts it and carries on with the next. ``sieve`` is shown each packet
    logged without a prefix, as it comes; for one it takes (True: it has dealt with
    it), None is yielded (only with a sieve).
    """
    view = memoryview(data)
    offset, end, unpack = 0, len(view), nl.NLMSGHDR.unpack_from
    while offset + nl.NLMSGHDR.size <= end:
        length, kind, _flags, seq, _pid = unpack(view, offset)
        if length < nl.NLMSGHDR.size or offset + length > end:
            yield RemoteError("bad netlink length")
            return
        if kind == _PACKET:
            yield _packet(view, offset + nl.NLMSGHDR.size, offset + length, sieve)
        elif kind == nl.NLMSG_ERROR:
            yield Ack(seq, nl.error_code(view[offset + nl.NLMSGHDR.size : offset + length]))
        offset += (length + 3) & ~3


def _packet(
    view: memoryview, start: int, end: int, sieve: Sieve | None
) -> Logged | RemoteError | None:
    """One NFULNL_MSG_PACKET: the nfgenmsg header, then attributes (payload last);
    None if ``sieve`` took it."""
    if end - start < 4:
        return RemoteError("short nflog message")
    group = _GROUP.unpack_from(view, start + 2)[0]
    prefix = b""
    offset, unpack = start + nl.NFGENMSG.size, nl.NLATTR.unpack_from
    while offset + 4 <= end:
        size, kind = unpack(view, offset)
        if size < 4 or offset + size > end:
            return RemoteError("bad nflog attribute")
        kind &= nl.NLA_TYPE_MASK
        if kind == NFULA_PAYLOAD:
            payload = bytes(view[offset + 4 : offset + size])
            if sieve is not None and not prefix and sieve(payload):
                return None
            return Logged(group, prefix, payload)
        if kind == NFULA_PREFIX and (size > 5 or (size == 5 and view[offset + 4])):
            prefix = bytes(view[offset + 4 : offset + size]).rstrip(b"\0")  # (else none)
        offset += (size + 3) & ~3
    return RemoteError("nflog message without payload")
