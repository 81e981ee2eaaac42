"""Grant elements in the kernel: where each lives (``grants4/6`` and their shards,
``paths4/6``, ``dnat4/6``), the comment that records who holds it, and the entries read back
(:func:`sesame.firewall.netlink.entries`) grouped as grants, for a restart, ``status``
and ``revoke``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Generic, TypeVar

from sesame.basics import Address, Port
from sesame.engine.events import Element, Grant
from sesame.firewall.watch import home_of


def set_of(address: Address, port: Port) -> str | None:
    """The set (or map) the element of ``address`` for ``port`` lives in: ``grants``
    (this host's port; one of SHARDS sets by the address, see :func:`home_of`),
    ``paths`` (another host's), ``dnat`` (a rewrite), ``anywhere``
    and ``everything`` (FORWARD_ALL's, by source alone), with the family's 4 or 6;
    None for another host of the other family (there is nothing to hold)."""
    n = "4" if isinstance(address, IPv4Address) else "6"
    target = port.address
    if port.every and not port.to:
        return f"anywhere{n}"
    if target is None:
        return home_of(address.packed)
    if target.version != address.version:
        return None
    if port.every:
        return f"everything{n}"
    return f"dnat{n}" if port.to else f"paths{n}"


def _key(address: Address, port: Port) -> str:
    if port.every:  # by source alone (fwknop's FORWARD_ALL)
        return f"{address} : {port.host}" if port.to else f"{address}"
    via = f" . {port.host}" if port.host and not port.to else ""
    data = f" : {port.host} . {port.to}" if port.to else ""
    return f"{address}{via} . {port.proto} . {port.number}{data}"


def remove(table: str, address: Address, ports: Iterable[Port]) -> list[str]:
    """Delete grant elements whether or not they (still) exist: add, then delete."""
    out: list[str] = []
    for port in ports:
        name = set_of(address, port)
        if name is None:
            continue
        where = f"inet {table} {name}"
        key = _key(address, port)
        out += [
            f"add element {where} {{ {key} }}",
            f"delete element {where} {{ {key.split(' : ')[0]} }}",
        ]
    return out


@dataclass(frozen=True, slots=True)
class Holder:
    """A grant that holds an element: its door, its user, and how many seconds before
    the element expires its own hold ends (0 for the latest)."""

    door: str
    user: str = ""
    before: float = 0.0


@dataclass(frozen=True, slots=True)
class Entry:
    """One element of a grant set as the kernel holds it; ``door`` and ``user`` are the
    holder with the latest deadline, ``holders`` all of them."""

    address: Address
    port: Port
    door: str
    left: float  # seconds until the kernel drops it
    user: str = ""
    holders: tuple[Holder, ...] = ()

    def held(self) -> tuple[Holder, ...]:
        return self.holders or (Holder(self.door, self.user),)


COMMENT_MAX = 127  # bytes nftables keeps of an element comment


def comment(element: Element) -> str:
    """The element comment that records who holds it: ``door user`` for each holder,
    latest first, then, after a ``-``, how many seconds before the element expires that
    holder's own hold ends (names are plain: no spaces, commas or dashes first). As
    many holders as fit; sesame itself knows them all."""
    assert element.until is not None
    parts: list[str] = []
    for grant in element.holders:
        before = element.until - grant.expires
        part = " ".join(x for x in (grant.door, grant.user) if x)
        part += f" -{before:.3f}".rstrip("0").rstrip(".") if before >= 0.001 else ""
        if len(",".join([*parts, part]).encode()) > COMMENT_MAX:
            break
        parts.append(part)
    return ",".join(parts)


def holders(note: str) -> tuple[Holder, ...]:
    """The holders recorded in an element comment (a bad part is left out)."""
    out = []
    for part in note.split(","):
        words = part.split()
        before = 0.0
        if len(words) > 1 and words[-1].startswith("-"):
            try:
                before = float(words.pop()[1:])
            except ValueError:
                continue
        if 1 <= len(words) <= 2:
            out.append(Holder(words[0], words[1] if len(words) == 2 else "", before))
    return tuple(out)


def to_grants(entries: Iterable[Entry], now: float) -> list[Grant]:
    """Group kernel elements into grants: a holder's elements at one address that end
    in the same second are one grant (a door's ports, opened together); elements
    that end apart are grants apart (an fwknop stanza's ports, asked for one by one),
    each with its own deadline. Within a grant the earliest expiry wins."""
    Key = tuple[str, Address, str, int]
    ports: dict[Key, list[Port]] = {}
    left: dict[Key, float] = {}
    for entry in entries:
        for holder in entry.held():
            remaining = max(0.0, entry.left - holder.before)
            key = (holder.door, entry.address, holder.user, round(remaining))
            ports.setdefault(key, []).append(entry.port)
            left[key] = min(left.get(key, remaining), remaining)
    return [
        Grant(door, address, tuple(sorted(set(ports[key]))), now + left[key], user)
        for key in ports
        for door, address, user, _ in [key]
    ]


T = TypeVar("T")


class Listed(Generic[T]):
    """The grant elements a table held, by source (the address's bytes), each group
    read into entries only when it is taken: a restart may find 100,000 of them, and
    what a daemon needs first is the few of one source."""

    def __init__(
        self,
        groups: dict[bytes, list[T]],
        read: Callable[[list[T]], list[Entry]],
        strays: list[T] | None = None,
    ):
        self._groups, self._read = groups, read
        self.left = sum(len(group) for group in groups.values())  # elements not taken
        # Elements found in another shard's set than their source's (see set_of): a
        # table from before grants were sharded, or an element added by hand.
        self.strays: list[T] = strays or []

    def take(self, address: Address) -> list[Entry]:
        """The elements of ``address`` (none if taken before)."""
        group = self._groups.pop(address.packed, None)
        if group is None:
            return []
        self.left -= len(group)
        return self._read(group)

    def take_some(self, n: int) -> list[Entry]:
        """The elements of some sources, about ``n`` of them (whole sources)."""
        taken: list[T] = []
        while self._groups and len(taken) < n:
            taken += self._groups.popitem()[1]
        self.left -= len(taken)
        return self._read(taken) if taken else []

    def rest(self) -> list[Entry]:
        """Every element not taken yet."""
        return self.take_some(self.left)
