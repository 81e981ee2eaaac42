"""Grant elements in the kernel: where each lives (``grants4/6``, ``paths4/6``,
``dnat4/6``), the comment that records who holds it, and reading them back (``nft
-j list``) as entries and as grants, for a restart, ``status`` and ``revoke``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any

from sesame.basics import Address, Port, Proto
from sesame.engine.events import Element, Grant


def set_of(address: Address, port: Port) -> str | None:
    """The set (or map) the element of ``address`` for ``port`` lives in: ``grants``
    (this host's port), ``paths`` (another host's), ``dnat`` (a rewrite), ``anywhere``
    and ``everything`` (FORWARD_ALL's, by source alone), with the family's 4 or 6;
    None for another host of the other family (there is nothing to hold)."""
    n = "4" if isinstance(address, IPv4Address) else "6"
    target = port.address
    if port.every and not port.to:
        return f"anywhere{n}"
    if target is None:
        return f"grants{n}"
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


def _fields(element: Any) -> tuple[dict[str, Any], list[Any], str] | None:
    """(the element's body, its key as a list, a map's destination) of one listed
    element: a set's ``{"elem": ...}``, or a map's ``[{"elem": ...}, data]``; a key of
    one address alone (FORWARD_ALL's set and map) as ``[address, "*", 1]``."""
    item, data = (element[0], element[1]) if isinstance(element, list) else (element, None)
    body = item.get("elem", item) if isinstance(item, dict) else {}
    value = body.get("val", body) if isinstance(body, dict) else body
    if isinstance(data, dict):  # ``destination . port``
        pair = data.get("concat")
        data = pair if isinstance(pair, list) and len(pair) == 2 else None
    if isinstance(value, str):
        return body, [value, "*", 1], data if isinstance(data, str) else ""
    key = value.get("concat") if isinstance(value, dict) else None
    if not isinstance(key, list) or len(key) not in (3, 4):
        return None
    return body, [*key, *(data if isinstance(data, list) else [])], ""


def parse_grants(items: list[dict[str, Any]]) -> list[Entry]:
    """The elements of listed grant sets and maps (``nft -j list set|map`` output)."""
    out: list[Entry] = []
    for item in items:
        for element in (item.get("set") or item.get("map") or {}).get("elem", []):
            fields = _fields(element)
            if fields is None:
                continue
            body, key, everything = fields
            port = _port(key, everything)
            if port is None:
                continue
            left = body.get("expires", body.get("timeout", 0)) if isinstance(body, dict) else 0
            note = str(body.get("comment", "")) if isinstance(body, dict) else ""
            held = holders(note) or (Holder(""),)
            address = ip_address(key[0])
            out.append(Entry(address, port, held[0].door, float(left or 0), held[0].user, held))
    return out


_PROTOS: dict[Any, Proto] = {6: "tcp", 17: "udp", "tcp": "tcp", "udp": "udp"}


def _port(key: list[Any], everything: str) -> Port | None:
    """The port of a grant element's key: ``source . proto . port`` (grants),
    ``source . destination . proto . port`` (paths), ``source . proto . port .
    destination . port`` (a rewrite), ``source * 1`` (FORWARD_ALL's)."""
    if key[1] == "*":
        host = str(ip_address(everything)) if everything else ""
        return Port("tcp", 1, host, 1 if host else 0, every=True)
    if len(key) == 5:  # a rewrite: the map's data after the key
        _, proto, number, host, to = key
    else:
        host, to = (str(key[1]), 0) if len(key) == 4 else ("", 0)
        proto, number = key[-2], key[-1]
    kind = _PROTOS.get(proto)
    if kind is None:
        return None
    return Port(kind, int(number), str(ip_address(host)) if host else "", int(to))


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
