"""Set elements of sesame's table over nftables' netlink protocol: the hot path (a
grant, a first knock read back) without libnftables' parsing and cache round trips.

A grant is one batch (one transaction) of NEWSETELEM/DELSETELEM messages, about 30
microseconds; libnftables takes 120 or more, several times that when the machine is
busy with a flood. Reading one element of the first-knock maps is one GETSETELEM for
that key; libnftables would list the whole map. Everything else (the table, its
rules, listings) stays with libnftables (:mod:`sesame.firewall.libnft`).

The messages are encoded by :mod:`sesame.wire.nftables`; the steps here are pure
plans; :class:`Netlink` only sends and receives.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address

from sesame.basics import Address, Port
from sesame.engine.events import Element
from sesame.errors import FirewallError
from sesame.firewall.elements import Entry, Holder, Listed, comment, holders, set_of
from sesame.firewall.watch import SHARD_MASK, home_of, shard_of
from sesame.wire import netlink as nl
from sesame.wire import nftables
from sesame.wire.nftables import (
    CREATE_SETELEM,
    NFT_MSG_DELSETELEM,
    NFT_MSG_GETSETELEM,
    NFT_MSG_NEWSETELEM,
    PROTO,
    Elem,
    batch,
    dump,
    element,
    parse_hit,
    port_value,
    setelem,
)

NEWSETELEM, DELSETELEM = NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM


def _family(address: Address) -> str:
    return "4" if isinstance(address, IPv4Address) else "6"


Step = tuple[int, str, list[bytes]]  # (NEW/DELSETELEM or CREATE_SETELEM, set, elements)


def grant_steps(elements: Iterable[Element], now: float, trust: bool = True) -> list[list[Step]]:
    """What puts grant elements in the state the engine decided: an element held until
    a deadline is replaced (add, delete, add with the fresh timeout and the holders as
    comment, so it works whether or not it exists); one nobody holds is added and
    deleted. A ``new`` element (with ``trust``) is only created, a third of the work
    for the kernel: the transaction then fails with EEXIST if the element was there
    after all (from before, or put there by another process), and the caller carries
    them out again without ``trust``. Elements of one set go together, ``CHUNK`` to a
    message (each keeps its own timeout and holders); each chunk's messages are a unit
    that one transaction carries whole. An element decided twice takes the later
    decision (and is not new)."""
    latest: dict[tuple[str, bytes], tuple[bytes | None, int | None, str, bool]] = {}
    for held in elements:
        where = located(held.address, held.port)
        if where is None:
            continue
        name, key, data = where
        timeout = None if held.until is None else max(1, round((held.until - now) * 1000))
        note = comment(held) if timeout is not None else ""
        new = trust and held.new and timeout is not None and (name, key) not in latest
        latest.pop((name, key), None)
        latest[name, key] = (data, timeout, note, new)
    by_set: dict[str, list[tuple[bytes, bytes | None, int | None, str]]] = {}
    created: dict[str, list[bytes]] = {}
    for (name, key), (data, timeout, note, new) in latest.items():
        if new:
            created.setdefault(name, []).append(element(key, timeout, note, data))
        else:
            by_set.setdefault(name, []).append((key, data, timeout, note))
    units: list[list[Step]] = [
        [(CREATE_SETELEM, name, made[first : first + CHUNK])]
        for name, made in created.items()
        for first in range(0, len(made), CHUNK)
    ]
    for name, items in by_set.items():
        for first in range(0, len(items), CHUNK):
            chunk = items[first : first + CHUNK]
            unit: list[Step] = [
                (NEWSETELEM, name, [element(key, data=data) for key, data, _, _ in chunk]),
                (DELSETELEM, name, [element(key) for key, _, _, _ in chunk]),
            ]
            timed = [element(k, t, n, d) for k, d, t, n in chunk if t is not None]
            if timed:
                unit.append((NEWSETELEM, name, timed))
            units.append(unit)
    return units


def located(address: Address, port: Port) -> tuple[str, bytes, bytes | None] | None:
    """The set (see :func:`elements.set_of`), key and map data of a grant element:
    source . proto . port (this host's port; a rewrite, its data destination . port),
    source . destination . proto . port (a path), the source alone (FORWARD_ALL's; the
    map's data the destination); None where there is nothing to hold."""
    name = set_of(address, port)
    if name is None:
        return None
    target = port.address
    if port.every:
        return name, address.packed, target.packed if port.to and target else None
    if target is None or port.to:
        data = target.packed + port.to.to_bytes(2, "big") + b"\0\0" if target else None
        return name, address.packed + port_value(port), data
    return name, address.packed + target.packed + port_value(port), None


PAD = (b"", b"\0\0")  # the end of a map's data: none, or a port's padding


def _width(name: str) -> int:
    """The bytes of a source address in grant set ``name`` (``*4`` or ``*6``, a
    shard's ``*4_K`` or ``*6_K``)."""
    return 4 if name.split("_")[0].endswith("4") else 16


def unlocated(name: str, key: bytes, data: bytes) -> tuple[Address, Port] | None:
    """The source and port of an element of grant set ``name`` (:func:`located`
    backwards); None for a key or data of the wrong size or an unknown protocol."""
    size = _width(name)
    kind = IPv4Address if size == 4 else IPv6Address
    if len(key) < size:
        return None
    source, rest = kind(key[:size]), key[size:]
    if name.startswith(("anywhere", "everything")):  # by source alone
        every = name.startswith("everything")
        if rest or len(data) != (size if every else 0):
            return None
        host = str(kind(data)) if every else ""
        return source, Port("tcp", 1, host, 1 if every else 0, every=True)
    host, to = "", 0
    if name.startswith("paths"):
        if len(rest) != size + 8:
            return None
        host, rest = str(kind(rest[:size])), rest[size:]
    elif name.startswith("dnat"):
        if len(data) != size + 4:
            return None
        host, to = str(kind(data[:size])), int.from_bytes(data[size : size + 2], "big")
    if len(rest) != 8 or rest[1:4] != b"\0\0\0" or rest[6:] != b"\0\0" or data[-2:] not in PAD:
        return None
    proto, number = PROTO.get(rest[0]), int.from_bytes(rest[4:6], "big")
    if proto is None or not number or (name.startswith("dnat") and not to):
        return None
    return source, Port(proto, number, host, to)


def entries(name: str, listed: Iterable[Elem]) -> list[Entry]:
    """The elements of grant set ``name`` as entries (those of no known shape left out):
    its holders from its comment, its time left from the kernel's expiration."""
    out: list[Entry] = []
    size = _width(name)
    kind = IPv4Address if size == 4 else IPv6Address
    for elem in listed:
        port = _port_of(name, elem.key[size:], elem.data)  # one port's many sources
        if port is None or len(elem.key) < size:
            continue
        held = _holders(elem.comment or "")
        left = (elem.expiration if elem.expiration is not None else elem.timeout or 0) / 1000
        out.append(Entry(kind(elem.key[:size]), port, held[0].door, left, held[0].user, held))
    return out


@functools.lru_cache(maxsize=1024)
def _port_of(name: str, tail: bytes, data: bytes) -> Port | None:
    found = unlocated(name, bytes(_width(name)) + tail, data)
    return None if found is None else found[1]


@functools.lru_cache(maxsize=4096)
def _holders(note: str) -> tuple[Holder, ...]:
    return holders(note) or (Holder(""),)


def listed(sets: dict[str, list[bytes]]) -> Listed[tuple[str, bytes]]:
    """The elements of grant sets (name -> the messages of its dump), by source; each
    read when taken; those of this host's grants found in another shard's set than
    their source's also as strays (:func:`move_steps`)."""
    groups: dict[bytes, list[tuple[str, bytes]]] = {}
    strays: list[tuple[str, bytes]] = []
    for name, bodies in sets.items():
        shard = shard_of(name)
        home = None if shard is None else (SHARD_MASK, shard, strays)
        for body in bodies:
            nftables.group(body, _width(name), groups, name, home)
    return Listed(groups, _read, strays)


def move_steps(strays: Iterable[tuple[str, bytes]]) -> list[list[Step]]:
    """What moves grant elements found in another shard's set (as :func:`listed` keeps
    them) to their source's, each with its time left and comment: added there, and
    added and deleted where it was (so that one which expired since it was listed is
    no fault), one unit each."""
    units: list[list[Step]] = []
    for name, item in strays:
        elem = nftables.read(item)
        size = _width(name)
        if len(elem.key) < size or elem.expiration == 0:
            continue
        home = home_of(elem.key[:size])
        left = elem.expiration if elem.expiration is not None else elem.timeout
        units.append(
            [
                (NEWSETELEM, home, [element(elem.key, left, elem.comment)]),
                (NEWSETELEM, name, [element(elem.key)]),
                (DELSETELEM, name, [element(elem.key)]),
            ]
        )
    return units


def _read(group: list[tuple[str, bytes]]) -> list[Entry]:
    by_set: dict[str, list[Elem]] = {}
    for name, item in group:
        by_set.setdefault(name, []).append(nftables.read(item))
    return [entry for name, found in by_set.items() for entry in entries(name, found)]


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


def known_steps(addresses: Iterable[Address], seconds: float) -> list[Step]:
    """Have these sources' SPA datagrams come to sesame's own group for ``seconds``
    (an element there already keeps its time)."""
    timeout = max(1, round(seconds * 1000))
    families: dict[str, list[bytes]] = {}
    for address in addresses:
        families.setdefault(f"known{_family(address)}", []).append(element(address.packed, timeout))
    return [
        (NEWSETELEM, name, found[first : first + CHUNK])
        for name, found in sorted(families.items())
        for first in range(0, len(found), CHUNK)
    ]


def forget_steps(address: Address) -> list[Step]:
    """Delete the first knock of ``address`` from the hits map of its family."""
    return [(DELSETELEM, f"hits{_family(address)}", [element(address.packed)])]


SOL_NETLINK = 270
NETLINK_CAP_ACK = 10


class Existed(FirewallError):
    """The kernel refused to create an element (CREATE_SETELEM) that was there: the
    transaction changed nothing."""


TRANSACTION = 96  # messages in one transaction, at most (each answer takes ~1 KiB of buffer)
TRANSACTION_BYTES = 65536  # ... and bytes (a batch must fit the socket's send buffer)
CHUNK = 64  # grant elements of one set in one message


class Netlink:
    """One NETLINK_NETFILTER socket for the elements of one table."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
        # Every message of a transaction is acknowledged: without a copy of the request
        # (NETLINK_CAP_ACK), in transactions of at most TRANSACTION messages, the
        # answers fit the socket's buffer. Else thousands of elements at once overran
        # it: ENOBUFS, and the answer never came.
        self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)  # the kernel answers at once

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def apply(self, steps: Sequence[Step], missing_ok: bool = False) -> None:
        """Carry out ``steps`` (see :meth:`apply_units`), each a unit of its own."""
        self.apply_units([[step] for step in steps], missing_ok)

    def apply_units(self, units: Sequence[Sequence[Step]], missing_ok: bool = False) -> None:
        """Carry out the steps of ``units``, in transactions of at most ``TRANSACTION``
        messages and ``TRANSACTION_BYTES`` bytes (their answers fit the socket's
        buffer, and the batch its send buffer), never splitting a unit; FirewallError
        if the kernel refuses one (with ``missing_ok``, except for an element that is
        not there)."""
        messages: list[tuple[int, str, list[bytes]]] = []
        size = 0
        for unit in units:
            more = sum(len(e) for _, _, elements in unit for e in elements) + 64 * len(unit)
            if messages and (
                len(messages) + len(unit) > TRANSACTION or size + more > TRANSACTION_BYTES
            ):
                self._transaction(messages, missing_ok)
                messages, size = [], 0
            messages += unit
            size += more
        self._transaction(messages, missing_ok)

    def _transaction(self, steps: Sequence[Step], missing_ok: bool) -> None:
        if not steps:
            return
        seqs = [self._next() for _ in range(len(steps) + 1)]
        messages = [
            setelem(kind, self.table, name, elements, seq)
            for (kind, name, elements), seq in zip(steps, seqs[1:], strict=True)
        ]
        answers = self._ask(batch(messages, seqs[0]), set(seqs[1:]))
        errors = sorted({-e for e in answers.values() if e})
        if missing_ok and errors == [errno.ENOENT]:
            return
        if errors == [errno.EEXIST]:
            raise Existed(os.strerror(errno.EEXIST))
        if errors:
            raise FirewallError(", ".join(os.strerror(e) for e in errors))

    def listing(self, name: str) -> list[bytes]:
        """The NEWSETELEM messages (after their netlink header) that hold every element
        of set ``name``, in one dump; FirewallError if the kernel refuses (ENOENT: no
        such table or set)."""
        seq = self._next()
        out: list[bytes] = []
        try:
            self.sock.send(dump(self.table, name, seq))
            while True:
                data = self.sock.recv(1 << 17)
                for head in nl.headers(data):
                    if head.seq != seq:
                        continue  # a late answer to an earlier request
                    if head.type == nl.NLMSG_DONE:
                        return out
                    body = data[head.body : head.end]
                    if head.type == nl.NLMSG_ERROR:
                        error = nl.error_code(body)
                        raise FirewallError(f"listing {name}: {os.strerror(-error)}")
                    if head.type & 0xFF == NEWSETELEM:
                        out.append(body)
        except OSError as exc:
            raise FirewallError(f"netlink: {exc}") from None

    def hit(self, address: Address) -> tuple[Port | None, float] | None:
        """(first port, age in seconds) of ``address``'s element in the hits map of
        its family, or None when it has none."""
        seq = self._next()
        name = f"hits{_family(address)}"
        request = setelem(NFT_MSG_GETSETELEM, self.table, name, [element(address.packed)], seq)
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
                for head in nl.headers(data):
                    if head.seq not in seqs:
                        continue  # a late answer to an earlier request
                    body = data[head.body : head.end]
                    if head.type == nl.NLMSG_ERROR:
                        answers[head.seq] = nl.error_code(body)
                    elif found is not None and head.type & 0xFF == NEWSETELEM:
                        found.append(body)
        except OSError as exc:
            raise FirewallError(f"netlink: {exc}") from None
        return answers

    def close(self) -> None:
        self.sock.close()
