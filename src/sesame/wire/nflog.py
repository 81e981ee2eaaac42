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
    data: bytes | memoryview, sieve: Sieve | None, shapes: Shapes | None = None
) -> Iterator[Logged | Ack | RemoteError | None]: ...
def messages(
    data: bytes | memoryview, sieve: Sieve | None = None, shapes: Shapes | None = None
) -> Iterator[Logged | Ack | RemoteError | None]:
    """Split one netlink datagram into logged packets and acks.

    A malformed message is yielded as a :class:`RemoteError` (not raised), so the
    caller counts it and carries on with the next. ``sieve`` is shown each packet
    logged without a prefix, as it comes; for one it takes (True: it has dealt with
    it), None is yielded (only with a sieve). ``shapes``: the socket's :class:`Shapes`
    (what is yielded is the same).
    """
    packet = _packet if shapes is None else shapes.packet
    view = memoryview(data)
    offset, end, unpack = 0, len(view), nl.NLMSGHDR.unpack_from
    while offset + nl.NLMSGHDR.size <= end:
        length, kind, _flags, seq, _pid = unpack(view, offset)
        if length < nl.NLMSGHDR.size or offset + length > end:
            yield RemoteError("bad netlink length")
            return
        if kind == _PACKET:
            yield packet(view, offset + nl.NLMSGHDR.size, offset + length, sieve)
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


LEARN_AFTER = 64  # packets of other shapes before a socket's shape is learned anew


class Shapes:
    """What a socket's packets look like. The kernel gives every packet that came in
    over one interface the same attributes before its payload (about ten), so the
    walk to the payload of one without a prefix is learned as a single struct: then
    one ``unpack_from`` reads every attribute header that walk would read, and where
    each is the same, so is what the walk would find (the payload's place; no
    prefix). Anything else is walked (a flood comes in over one interface; packets of
    other shapes make it learn anew only after LEARN_AFTER of them, so a stranger who
    sends over two interfaces in turn cannot have it learn at every packet).
    """

    def __init__(self) -> None:
        self._shape: struct.Struct | None = None
        self._headers: tuple[int, ...] = ()  # what the shape reads, less group and payload
        self._at = 0  # the payload attribute's offset in the message
        self._walked = LEARN_AFTER  # packets walked since the shape was learned

    def packet(
        self, view: memoryview, start: int, end: int, sieve: Sieve | None
    ) -> Logged | RemoteError | None:
        """As :func:`_packet`."""
        shape = self._shape
        if shape is not None and start + self._at + 4 <= end:
            read = shape.unpack_from(view, start)
            offset, size = start + self._at, read[-2]
            if (
                read[-1] == NFULA_PAYLOAD
                and 4 <= size <= end - offset
                and read[2:-2] == self._headers
            ):
                payload = bytes(view[offset + 4 : offset + size])
                if sieve is not None and sieve(payload):
                    return None
                return Logged(read[0] << 8 | read[1], b"", payload)
        self._walked += 1
        if self._walked >= LEARN_AFTER:
            self._learn(view, start, end)
        return _packet(view, start, end, sieve)

    def _learn(self, view: memoryview, start: int, end: int) -> None:
        """The walk of :func:`_packet` to the payload of this message, as a struct, if
        it is a well-formed one without a prefix."""
        form, headers = ["=2xBB"], list[int]()  # the nfgenmsg header: the group, big-endian
        offset, unpack = start + nl.NFGENMSG.size, nl.NLATTR.unpack_from
        while offset + 4 <= end:
            size, kind = unpack(view, offset)
            if size < 4 or offset + size > end:
                return
            step = (size + 3) & ~3
            if kind & nl.NLA_TYPE_MASK == NFULA_PAYLOAD:  # (with flags: never matched)
                self._shape = struct.Struct("".join(form) + "HH")
                self._headers, self._at, self._walked = tuple(headers), offset - start, 0
                return
            if kind & nl.NLA_TYPE_MASK == NFULA_PREFIX and size > 4:
                if size > 5 or view[offset + 4]:
                    return  # a prefix: not the shape of a flood's packets
                form.append(f"HHB{step - 5}x")
                headers += (size, kind, 0)
            else:
                form.append(f"HH{step - 4}x")
                headers += (size, kind)
            offset += step
