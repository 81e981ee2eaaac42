"""Key handling: every use of a user's key gets its own subkey (HKDF-SHA256).

No primitive is made by hand: HKDF, HMAC and ChaCha20-Poly1305 come from
``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sesame.doors import KEY_BYTES
from sesame.privileges import because

SPA_LABEL = b"sesame spa v1"
TOTP_LABEL = b"sesame totp v1"


def derive(key: bytes, label: bytes) -> bytes:
    """A 32-byte subkey of ``key`` for one purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(key)


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def decode_key(text: str) -> bytes:
    """A base64 key of exactly 32 bytes; ValueError (without the key) otherwise."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"key must be {KEY_BYTES} bytes, base64-encoded (not {len(key)} bytes)")
    return key


def same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of MACs and digests."""
    return hmac.compare_digest(a, b)


def read_private(path: str, limit: int = 65536, group: bool = False) -> bytes:
    """Read a file that holds secrets; refused (ValueError, with the fix) if anyone but
    its owner (with ``group``: and its group, to read) may read or write it, or if it
    is a symbolic link. The server's key files are ``root:sesame``, mode 0640: the
    daemon runs as a member of the group."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        why = because(path, exc)
        raise ValueError(f"cannot read {path}: {why}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (0o027 if group else 0o077):
            fix = f"chmod 640 {path} (its group may read it)" if group else f"chmod 600 {path}"
            raise ValueError(
                f"{path} is open to {'others' if group else 'group or others'}"
                f" (mode {mode & 0o777:04o}); it holds a key: run {fix}"
            )
        return handle.read(limit)
