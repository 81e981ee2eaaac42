"""Rolling one-time knock sequences (RFC 6238 style: HMAC over a 30-second step).

Each user's sequence for a door is derived from the user's key and the time step;
the server accepts the previous, current and next step, and spends a sequence once
used. Uniform ports by rejection sampling; no port twice in a row (a repeated port
would read as a duplicate knock).
"""

from __future__ import annotations

import hashlib
import hmac

from sesame.basics import Port
from sesame.crypto import TOTP_LABEL, derive

STEP = 30


def subkey(key: bytes) -> bytes:
    return derive(key, TOTP_LABEL)


def step_of(wall: float) -> int:
    return int(wall // STEP)


def sequence(
    subkey: bytes, door: str, step: int, port_range: tuple[int, int], length: int
) -> tuple[Port, ...]:
    """The one-time sequence of ``door`` for time step ``step``."""
    first, last = port_range
    size = last - first + 1
    limit = (1 << 32) // size * size
    out: list[Port] = []
    counter = 0
    while len(out) < length:
        message = door.encode() + b"\0" + step.to_bytes(8, "big") + counter.to_bytes(4, "big")
        block = hmac.new(subkey, message, hashlib.sha256).digest()
        counter += 1
        for i in range(0, len(block), 4):
            n = int.from_bytes(block[i : i + 4], "big")
            if n >= limit:
                continue
            port = Port("tcp", first + n % size)
            if out and out[-1] == port:
                continue
            out.append(port)
            if len(out) == length:
                break
    return tuple(out)


def spent_key(door: str, user: str, step: int) -> bytes:
    """The replay-cache key that marks a one-time sequence as used."""
    data = b"totp\0" + door.encode() + b"\0" + user.encode() + b"\0" + step.to_bytes(8, "big")
    return hashlib.sha256(data).digest()[:16]


def spent_until(step: int) -> float:
    """When a sequence of ``step`` leaves the accepted window (previous/current/next)."""
    return float((step + 2) * STEP)
