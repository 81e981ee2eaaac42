"""sesame's single-packet authorization datagram (version 1).

Layout (all integers big-endian)::

    header   version (1 byte, = 1) | name length n (1 byte) | user name (n bytes)
    nonce    12 random bytes: the AEAD nonce, also the replay-cache key
    sealed   ChaCha20-Poly1305(key = HKDF(user key, "sesame spa v1"), nonce,
                               associated data = header) of the body, tag appended
    body     timestamp (8 bytes, Unix seconds) | door length m (1) | door (m) |
             family (1 byte: 4 or 6) | address (4 or 16 bytes)

The user name travels in clear (the server must know which key to use) and is
authenticated as associated data. The server checks sizes and looks the user up,
then verifies the tag before it parses anything of the body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sesame.basics import Address, Host4, Host6
from sesame.crypto import SPA_LABEL, derive
from sesame.errors import RemoteError

VERSION = 1
NONCE = 12
TAG = 16
MIN_SIZE = 2 + 1 + NONCE + TAG + 8 + 2 + 1 + 4
MAX_SIZE = 2 + 32 + NONCE + TAG + 8 + 1 + 32 + 1 + 16


def cipher(key: bytes) -> ChaCha20Poly1305:
    """The AEAD for a user's key (build once per user: it is reused per packet)."""
    return ChaCha20Poly1305(derive(key, SPA_LABEL))


@dataclass(frozen=True, slots=True)
class Request:
    """A verified SPA request."""

    user: str
    timestamp: int
    door: str
    address: Address
    nonce: bytes


def encode(
    user: str, aead: ChaCha20Poly1305, door: str, address: Address, timestamp: int, nonce: bytes
) -> bytes:
    """Build a datagram. ``nonce`` must be 12 fresh random bytes."""
    name, door_b = user.encode("ascii"), door.encode("ascii")
    if len(nonce) != NONCE:
        raise ValueError("nonce must be 12 bytes")
    header = bytes([VERSION, len(name)]) + name
    family = 4 if isinstance(address, IPv4Address) else 6
    body = (
        struct.pack(">Q", timestamp)
        + bytes([len(door_b)])
        + door_b
        + bytes([family])
        + address.packed
    )
    return header + nonce + aead.encrypt(nonce, body, header)


def user_of(data: bytes) -> tuple[str, int]:
    """The user name in clear and the header's length; checks size and version."""
    if not MIN_SIZE <= len(data) <= MAX_SIZE:
        raise RemoteError("spa size")
    if data[0] != VERSION:
        raise RemoteError("spa version")
    n = data[1]
    if not 1 <= n <= 32:
        raise RemoteError("spa header")
    try:
        return data[2 : 2 + n].decode("ascii"), 2 + n
    except UnicodeDecodeError:
        raise RemoteError("spa header") from None


def open_sealed(data: bytes, header_len: int, aead: ChaCha20Poly1305, user: str) -> Request:
    """Verify the tag, then parse the body. Raises RemoteError."""
    header = data[:header_len]
    nonce = data[header_len : header_len + NONCE]
    try:
        body = aead.decrypt(nonce, data[header_len + NONCE :], header)
    except InvalidTag:
        raise RemoteError("bad tag") from None
    # Authentic from here on; the checks below guard against our own bugs.
    if len(body) < 8 + 1:
        raise RemoteError("spa body")
    (timestamp,) = struct.unpack_from(">Q", body)
    m = body[8]
    rest = body[9 + m :]
    door = body[9 : 9 + m].decode("ascii", "replace")
    if len(rest) == 5 and rest[0] == 4:
        address: Address = Host4(rest[1:])
    elif len(rest) == 17 and rest[0] == 6:
        address = Host6(rest[1:])
    else:
        raise RemoteError("spa body")
    return Request(user, timestamp, door, address, bytes(nonce))
