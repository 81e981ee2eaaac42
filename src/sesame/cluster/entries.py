"""What nodes tell each other through the store, and how it is authenticated.

An entry says that a grant of a cluster door opened (``open``: door, address, ports,
user, deadline in Unix time) or was closed before its time (``close``: an unknock or
a revoke). Its body is JSON; its MAC is HMAC-SHA256 under a subkey of the cluster
key, over the cluster's name and the body. Whoever can write to the store but lacks
the key cannot make an entry a node accepts: an entry whose MAC does not verify is
refused (``RemoteError("forged")``) before its body is even parsed.

A replay claim's key in the store is a MAC of the spent key (an SPA nonce, an fwknop
digest, a one-time sequence's step), so the store learns nothing of users or doors.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Literal

from sesame.basics import Address, Port
from sesame.crypto import derive, same
from sesame.errors import RemoteError

ENTRY_LABEL = b"sesame cluster entry v1"
CLAIM_LABEL = b"sesame cluster claim v1"
MAX_BODY = 1 << 20  # bytes of a message: BATCH entries of 32 ports each fit
BATCH = 512  # entries in one message, at most
Kind = Literal["open", "close"]
LAYOUT = "sesame entries 1"


@dataclass(frozen=True, slots=True)
class Entry:
    """One grant opened (``open``) or closed early (``close``), as a node tells it.
    ``until`` is the grant's deadline (Unix time); ``at`` when it was told; ``id``
    tells the same entry apart when it arrives twice (the stream, the list of live
    grants)."""

    kind: Kind
    door: str
    address: Address
    ports: tuple[Port, ...]
    until: float
    user: str = ""
    node: str = ""
    at: float = 0.0
    id: str = ""
    reason: str = ""  # a close's: "unknock" or "revoked"

    def __post_init__(self) -> None:
        if self.kind not in ("open", "close"):
            raise ValueError(f"an entry is open or close, not {self.kind!r}")
        if not self.ports and self.kind == "open":
            raise ValueError("an open entry names its ports")


def new_id() -> str:
    return os.urandom(12).hex()


class Signer:
    """Seals and opens entries, and names claims, with one cluster's key."""

    def __init__(self, key: bytes, name: str) -> None:
        self._entry_key = derive(key, ENTRY_LABEL)
        self._claim_key = derive(key, CLAIM_LABEL)
        self.name = name
        self._domain = name.encode() + b"\0"

    def seal(self, entries: Sequence[Entry]) -> tuple[bytes, bytes]:
        """The body and the MAC (hex) of ``entries`` (told together: one MAC, one
        message in the store, for what one batch of packets opened)."""
        fields = [LAYOUT, [_fields(entry) for entry in entries]]
        body = json.dumps(fields, separators=(",", ":")).encode()
        return body, self._mac(body)

    def open(self, body: bytes, mac: bytes) -> list[Entry]:
        """The entries in ``body`` if ``mac`` is its MAC; RemoteError otherwise."""
        if len(body) > MAX_BODY or not same(self._mac(body), mac):
            raise RemoteError("forged")
        try:
            layout, items = json.loads(body)
            if layout != LAYOUT:
                raise ValueError(f"entries of another layout: {layout!r}")
            return [_entry(item) for item in items]
        except (ValueError, TypeError, KeyError) as exc:  # a node with the key wrote it
            raise RemoteError("malformed") from exc

    def claim(self, spent: bytes) -> str:
        """The store's key for a spent one-shot key."""
        digest = hmac.digest(self._claim_key, spent, "sha256")[:16].hex()
        return f"{self.name}:seen:{digest}"

    def _mac(self, body: bytes) -> bytes:
        return hmac.digest(self._entry_key, self._domain + body, "sha256").hex().encode()


def _fields(entry: Entry) -> list[Any]:
    """An entry as a JSON array."""
    return [
        entry.kind,
        entry.door,
        str(entry.address),
        [[p.proto, p.number, p.host, p.to, p.every] for p in entry.ports],
        entry.until,
        entry.user,
        entry.node,
        entry.at,
        entry.id,
        entry.reason,
    ]


def _entry(raw: list[Any]) -> Entry:
    kind, door, address, ports, until, user, node, at, ident, reason = raw
    return Entry(
        kind,
        str(door),
        ip_address(address),
        tuple(
            Port(proto, int(n), str(host), int(to), bool(every))
            for proto, n, host, to, every in ports
        ),
        float(until),
        str(user),
        str(node),
        float(at),
        str(ident),
        str(reason),
    )
