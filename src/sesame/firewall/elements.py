"""Grant elements in the kernel: where each lives (``grants4/6``, ``paths4/6``,
``dnat4/6``), the comment that records who holds it, and reading them back (``nft
-j list``) as entries and as grants, for a restart, ``status`` and ``revoke``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any

from sesame.basics import Address, Port
from sesame.engine.events import Element, Grant


def _set(address: Address, port: Port) -> str:
    n = "4" if isinstance(address, IPv4Address) else "6"
    return f"dnat{n}" if port.to else f"paths{n}" if port.host else f"grants{n}"


def _key(address: Address, port: Port) -> str:
    via = f" . {port.host}" if port.host and not port.to else ""
    data = f" : {port.host} . {port.to}" if port.to else ""
    return f"{address}{via} . {port.proto} . {port.number}{data}"


def remove(table: str, address: Address, ports: Iterable[Port]) -> list[str]:
    """Delete grant elements whether or not they (still) exist: add, then delete."""
    out: list[str] = []
    for port in ports:
        target = port.address
        if target is not None and target.version != address.version:
            continue  # a path of the other family: never held
        where = f"inet {table} {_set(address, port)}"
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


def parse_grants(items: list[dict[str, Any]]) -> list[Entry]:
    """The elements of listed grant sets (``nft -j list set`` output)."""
    out: list[Entry] = []
    for item in items:
        elements = (item.get("set") or item.get("map") or {}).get("elem", [])
        for element in elements:
            body = element.get("elem", element) if isinstance(element, dict) else {}
            value = body.get("val", body) if isinstance(body, dict) else body
            to: list[Any] = []
            if isinstance(element, list) and len(element) == 2:  # a map's key : data
                body = element[0].get("elem", element[0]) if isinstance(element[0], dict) else {}
                value = body.get("val", body) if isinstance(body, dict) else body
                data = element[1].get("concat") if isinstance(element[1], dict) else None
                to = data if isinstance(data, list) and len(data) == 2 else []
            concat = value.get("concat") if isinstance(value, dict) else None
            if not isinstance(concat, list) or len(concat) not in (3, 4):
                continue
            addr, *via, proto, number = concat  # paths: source . destination . ...
            proto = {6: "tcp", 17: "udp"}.get(proto, proto)
            if proto not in ("tcp", "udp"):
                continue
            left = body.get("expires", body.get("timeout", 0)) if isinstance(body, dict) else 0
            note = str(body.get("comment", "")) if isinstance(body, dict) else ""
            held = holders(note) or (Holder(""),)
            host = str(ip_address((via or to or [""])[0])) if via or to else ""
            port = Port(
                "tcp" if proto == "tcp" else "udp", int(number), host, int(to[1]) if to else 0
            )
            address = ip_address(addr)
            out.append(Entry(address, port, held[0].door, float(left or 0), held[0].user, held))
    return out


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
