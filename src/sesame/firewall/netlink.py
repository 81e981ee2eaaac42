"""Set elements of sesame's table over nftables' netlink protocol: the hot path (a
grant, a first knock read back) without libnftables' parsing and cache round trips.

A grant is one batch (one transaction) of NEWSETELEM/DELSETELEM messages, about 30
microseconds; libnftables takes 120 or more, several times that when the machine is
busy with a flood. Reading one element of the first-knock maps is one GETSETELEM for
that key; libnftables would list the whole map. Everything else (the table, its
rules, listings) stays with libnftables (:mod:`sesame.firewall.libnft`).

The encoders and the decoder are pure functions; :class:`Netlink` is the socket.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from sesame.basics import Address, Port, Proto
from sesame.engine.events import Element
from sesame.errors import FirewallError
from sesame.firewall.ruleset import comment

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7  # the multicast group of nftables' change notifications
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NEWSET = 9
NEWSETELEM, GETSETELEM, DELSETELEM = 12, 13, 14
NEWGEN = 15  # ends the notifications of one transaction; says which process made it
GEN_PROC_PID = 2
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 1, 4, 0x400
NFPROTO_INET = 1
NLA_F_NESTED = 0x8000
# Attributes: the element list, one element, and an element's fields.
LIST_TABLE, LIST_SET, LIST_ELEMENTS = 1, 2, 3
LIST_ELEM = 1
ELEM_KEY, ELEM_DATA, ELEM_TIMEOUT, ELEM_EXPIRATION, ELEM_USERDATA = 1, 2, 4, 5, 6
DATA_VALUE = 1
UDATA_COMMENT = 0  # nftables' tag for an element comment in its user data

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_PROTOS: dict[int, Proto] = {6: "tcp", 17: "udp"}
_NUMBERS = {"tcp": 6, "udp": 17}


def _attr(kind: int, data: bytes, nested: bool = False) -> bytes:
    size = _NLATTR.size + len(data)
    return _NLATTR.pack(size, kind | (NLA_F_NESTED if nested else 0)) + data + b"\0" * (-size % 4)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        size, kind = _NLATTR.unpack_from(data, offset)
        if size < 4:
            return
        yield kind & ~NLA_F_NESTED, data[offset + 4 : offset + size]
        offset += (size + 3) & ~3


def _family(address: Address) -> str:
    return "4" if isinstance(address, IPv4Address) else "6"


def port_value(port: Port) -> bytes:
    """``proto . port`` as nftables lays out a concatenation: each in 4 bytes."""
    return bytes([_NUMBERS[port.proto], 0, 0, 0]) + port.number.to_bytes(2, "big") + b"\0\0"


def element(key: bytes, timeout_ms: int | None = None, comment: str | None = None) -> bytes:
    """One NFTA_LIST_ELEM: a key, and optionally a timeout and nft's comment."""
    fields = _attr(ELEM_KEY, _attr(DATA_VALUE, key), nested=True)
    if timeout_ms is not None:
        fields += _attr(ELEM_TIMEOUT, struct.pack(">Q", timeout_ms))
    if comment is not None:
        text = comment.encode() + b"\0"
        fields += _attr(ELEM_USERDATA, bytes([UDATA_COMMENT, len(text)]) + text)
    return _attr(LIST_ELEM, fields, nested=True)


def message(kind: int, table: str, name: str, elements: Sequence[bytes], seq: int) -> bytes:
    """A NEW/GET/DELSETELEM request for ``elements`` of set ``name``, acknowledged."""
    body = (
        struct.pack("=BBH", NFPROTO_INET, 0, 0)
        + _attr(LIST_TABLE, table.encode() + b"\0")
        + _attr(LIST_SET, name.encode() + b"\0")
        + _attr(LIST_ELEMENTS, b"".join(elements), nested=True)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if kind == NEWSETELEM else 0)
    header = (NFNL_SUBSYS_NFTABLES << 8) | kind
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), header, flags, seq, 0) + body


def batch(messages: Sequence[bytes], seq: int) -> bytes:
    """Messages wrapped in one nftables transaction (all or nothing)."""
    res_id = struct.pack("=BBH", 0, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
    begin = _NLMSGHDR.pack(_NLMSGHDR.size + 4, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0)
    end = _NLMSGHDR.pack(_NLMSGHDR.size + 4, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0)
    return begin + res_id + b"".join(messages) + end + res_id


Step = tuple[int, str, list[bytes]]  # (NEW/DELSETELEM, set name, elements)


def grant_steps(elements: Iterable[Element], now: float) -> list[Step]:
    """What puts grant elements in the state the engine decided: an element held until
    a deadline is replaced (add, delete, add with the fresh timeout and the holders as
    comment, so it works whether or not it exists); one nobody holds is added and
    deleted. A message each: every element has its own timeout and holders."""
    steps: list[Step] = []
    for held in elements:
        name = f"grants{_family(held.address)}"
        key = held.address.packed + port_value(held.port)
        steps.append((NEWSETELEM, name, [element(key)]))
        steps.append((DELSETELEM, name, [element(key)]))
        if held.until is not None:
            timeout = max(1, round((held.until - now) * 1000))
            steps.append((NEWSETELEM, name, [element(key, timeout, comment(held))]))
    return steps


def follow_steps(addresses: Iterable[Address], seconds: float, forget: bool) -> list[Step]:
    """Have these sources' knocks come to sesame for ``seconds`` (it follows them),
    and, with ``forget``, delete the first knocks it read back from the hits maps."""
    timeout = max(1, round(seconds * 1000))
    steps: list[Step] = []
    for address in addresses:
        n = _family(address)
        if forget:
            steps.append((DELSETELEM, f"hits{n}", [element(address.packed)]))
        steps.append((NEWSETELEM, f"follow{n}", [element(address.packed, timeout)]))
    return steps


def forget_steps(address: Address) -> list[Step]:
    """Delete the first knock of ``address`` from the hits map of its family."""
    return [(DELSETELEM, f"hits{_family(address)}", [element(address.packed)])]


def parse_hit(body: bytes) -> tuple[Port | None, float] | None:
    """The first port (None if the data is not one) and the age in seconds of the
    element in one NEWSETELEM answer of a hits map; None if it holds no element."""
    for kind, value in _attrs(body[4:]):  # after the nfgenmsg header
        if kind != LIST_ELEMENTS:
            continue
        for _, item in _attrs(value):
            fields = dict(_attrs(item))
            data = dict(_attrs(fields.get(ELEM_DATA, b""))).get(DATA_VALUE, b"")
            if len(data) < 6 or ELEM_TIMEOUT not in fields or ELEM_EXPIRATION not in fields:
                return None
            timeout = int.from_bytes(fields[ELEM_TIMEOUT][:8], "big")
            left = int.from_bytes(fields[ELEM_EXPIRATION][:8], "big")
            proto, number = _PROTOS.get(data[0]), int.from_bytes(data[4:6], "big")
            port = Port(proto, number) if proto and number else None
            return port, max(0, timeout - left) / 1000
    return None


@dataclass(frozen=True, slots=True)
class Notice:
    """One nftables change notification: what changed (NEW/DEL TABLE, CHAIN, RULE,
    SET, SETELEM, ...: the message type), in which family, table and set; or, for
    NEWGEN (``kind`` 15), the process that made the transaction (``pid``)."""

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
    mine = _attr(LIST_TABLE, name)[: _NLATTR.size + len(name)]
    start, end = _NLMSGHDR.size + 4, _NLMSGHDR.size + 4 + len(mine)
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size + 4 or offset + length > len(data):
            return
        message = kind & 0xFF
        if kind >> 8 != NFNL_SUBSYS_NFTABLES:
            pass
        elif message == NEWGEN:
            attrs = dict(_attrs(data[offset + start : offset + length]))
            pid = attrs.get(GEN_PROC_PID, b"")
            yield Notice(message, pid=int.from_bytes(pid, "big") if len(pid) == 4 else 0)
        elif data[offset + start : offset + end] == mine:
            attrs = dict(_attrs(data[offset + start : offset + length]))
            chain_or_set = attrs.get(LIST_SET, b"") if message >= NEWSET else b""
            yield Notice(
                message,
                data[offset + _NLMSGHDR.size],
                table,
                chain_or_set.split(b"\0", 1)[0].decode("ascii", "replace"),
            )
        offset += (length + 3) & ~3


class Netlink:
    """One NETLINK_NETFILTER socket for the elements of one table."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)  # the kernel answers at once

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def apply(self, steps: Sequence[Step], missing_ok: bool = False) -> None:
        """Carry out ``steps`` in one transaction; FirewallError if the kernel refuses
        (with ``missing_ok``, except for an element that is not there)."""
        if not steps:
            return
        seqs = [self._next() for _ in range(len(steps) + 1)]
        messages = [
            message(kind, self.table, name, elements, seq)
            for (kind, name, elements), seq in zip(steps, seqs[1:], strict=True)
        ]
        answers = self._ask(batch(messages, seqs[0]), set(seqs[1:]))
        errors = sorted({-e for e in answers.values() if e})
        if missing_ok and errors == [errno.ENOENT]:
            return
        if errors:
            raise FirewallError(", ".join(os.strerror(e) for e in errors))

    def hit(self, address: Address) -> tuple[Port | None, float] | None:
        """(first port, age in seconds) of ``address``'s element in the hits map of
        its family, or None when it has none."""
        seq = self._next()
        name = f"hits{_family(address)}"
        request = message(GETSETELEM, self.table, name, [element(address.packed)], seq)
        found: list[bytes] = []
        error = self._ask(request, {seq}, found)[seq]
        if error and error != -errno.ENOENT:
            raise FirewallError(f"reading {name}: {os.strerror(-error)}")
        return parse_hit(found[0]) if found else None

    def _ask(
        self, request: bytes, seqs: set[int], found: list[bytes] | None = None
    ) -> dict[int, int]:
        """Send ``request``; collect the error code (0: done) the kernel acknowledges
        each of ``seqs`` with, and the element answers into ``found``."""
        answers: dict[int, int] = {}
        try:
            self.sock.send(request)
            while len(answers) < len(seqs):
                data = self.sock.recv(65536)
                offset = 0
                while offset + _NLMSGHDR.size <= len(data):
                    length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                    body = data[offset + _NLMSGHDR.size : offset + length]
                    offset += max(_NLMSGHDR.size, (length + 3) & ~3)
                    if seq not in seqs:
                        continue  # a late answer to an earlier request
                    if kind == NLMSG_ERROR:
                        answers[seq] = struct.unpack_from("=i", body)[0] if len(body) >= 4 else -1
                    elif found is not None and kind & 0xFF == NEWSETELEM:
                        found.append(body)
        except OSError as exc:
            raise FirewallError(f"netlink: {exc}") from None
        return answers

    def close(self) -> None:
        self.sock.close()
