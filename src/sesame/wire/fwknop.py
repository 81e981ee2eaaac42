"""fwknop 2.x SPA datagrams (Rijndael mode with HMAC), as Debian's fwknop 2.6.10 makes
them: the wire format that sesame accepts from fwknop clients and sends to fwknopd.

    wire      = b64(ciphertext) without "U2FsdGVkX1" and "=" | b64(HMAC) without "="
    HMAC      = HMAC-<digest>(hmac key, "U2FsdGVkX1" + b64(ciphertext) without "=")
    ciphertext = "Salted__" | salt (8) | AES-256-CBC(key, iv, PKCS#7(plaintext))
    key, iv   = OpenSSL EVP_BytesToKey(MD5, 1 round, password = the key, salt)
    plaintext = rand:b64(user):timestamp:version:type:b64(message)[:...]:b64(SHA-256 digest)

The HMAC is compared in constant time before anything is decrypted. Every fault in
input raises RemoteError with a short reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sesame.crypto import same
from sesame.errors import RemoteError

PREFIX = "U2FsdGVkX1"  # base64 of b"Salted__" minus its last character
_PREFIX = PREFIX.encode()
MIN_SIZE, MAX_SIZE = 140, 1500
HMAC_TYPES = {
    "md5": 22,
    "sha1": 27,
    "sha256": 43,
    "sha384": 64,
    "sha512": 86,
    "sha3_256": 43,
    "sha3_512": 86,
}
VERSION = "3.0.0"
ACCESS, ACCESS_WITH_TIMEOUT = 1, 3
_B64 = re.compile(rb"^[A-Za-z0-9+/]+$")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RemoteError("fwknop base64") from None


def _key_iv(password: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with MD5 and one round (no library offers it)."""
    out, block = b"", b""
    while len(out) < 48:
        block = hashlib.md5(block + password + salt).digest()  # noqa: S324 - the format's KDF
        out += block
    return out[:32], out[32:48]


def _b64_tag(digest: bytes) -> bytes:
    """fwknop's HMAC field: base64 without padding."""
    return binascii.b2a_base64(digest, newline=False).rstrip(b"=")


class Verifier:
    """One stanza's HMAC key, keyed once: the checks before decryption, then the
    decryption. Each datagram copies the keyed HMAC (which has the "U2FsdGVkX1"
    prefix in already) rather than keying a new one, which matters under a flood."""

    __slots__ = ("_keyed", "_tag")

    def __init__(self, hmac_key: bytes | None, hmac_type: str = "sha256") -> None:
        self._keyed = None if hmac_key is None else hmac.new(hmac_key, _PREFIX, hmac_type)
        self._tag = HMAC_TYPES[hmac_type]

    def fault(self, wire: bytes) -> str | None:
        """The cheap checks, then the HMAC: what is wrong with a datagram (a
        RemoteError reason), or None if it may be decrypted. Returns rather than
        raises: under a flood of junk, most datagrams end here."""
        if not MIN_SIZE <= len(wire) <= MAX_SIZE or not _B64.match(wire):
            return "fwknop size or charset"
        if wire.startswith(_PREFIX):
            return "fwknop prefix"
        if self._keyed is not None:
            mac = self._keyed.copy()
            mac.update(wire[: -self._tag])
            if not same(_b64_tag(mac.digest()), wire[-self._tag :]):
                return "fwknop bad hmac"
        return None

    def open(
        self, wire: bytes, key: bytes, replayed: Callable[[bytes], bool] | None = None
    ) -> Message:
        """Decrypt a datagram :meth:`fault` passed. ``replayed`` is asked first
        whether the datagram was seen before."""
        tagless = wire[: -self._tag] if self._keyed is not None else wire
        return _open(wire, _PREFIX + tagless, key, replayed)


@dataclass(frozen=True, slots=True)
class Message:
    """A decrypted, verified fwknop SPA message."""

    rand: str
    user: str
    timestamp: int
    version: str
    kind: int
    access: str  # "IP,proto/port[,proto/port...]"
    client_timeout: int = 0


def decode(
    wire: bytes,
    key: bytes,
    hmac_key: bytes | None,
    hmac_type: str = "sha256",
    replayed: Callable[[bytes], bool] | None = None,
) -> Message:
    """Verify and decrypt one datagram for one stanza's keys. ``replayed`` is asked,
    once the HMAC holds and before decryption, whether the datagram was seen before."""
    verifier = Verifier(hmac_key, hmac_type)
    reason = verifier.fault(wire)
    if reason is not None:
        raise RemoteError(reason)
    return verifier.open(wire, key, replayed)


def _open(
    wire: bytes,
    body: bytes,
    key: bytes,
    replayed: Callable[[bytes], bool] | None,
) -> Message:
    """Decrypt ``body`` (the base64 ciphertext of ``wire``) once its HMAC holds."""
    if replayed is not None and replayed(wire):
        raise RemoteError("replay")
    raw = unb64(body.decode("ascii"))
    if len(raw) < 32 or not raw.startswith(b"Salted__") or (len(raw) - 16) % 16:
        raise RemoteError("fwknop ciphertext")
    aes_key, iv = _key_iv(key, raw[8:16])
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        plaintext = plain.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise RemoteError("fwknop decrypt") from None
    return _parse(plaintext)


def _parse(plaintext: str) -> Message:
    if not 36 <= len(plaintext) <= MAX_SIZE or not plaintext.isprintable():
        raise RemoteError("fwknop plaintext")
    fields = plaintext.split(":")
    if not 6 <= len(fields) - 1 <= 9:
        raise RemoteError("fwknop fields")
    *data, digest = fields
    expected = b64(hashlib.sha256(":".join(data).encode("ascii")).digest())
    if not same(expected.encode(), digest.encode()):
        raise RemoteError("fwknop digest")
    rand, user, stamp, version, kind, access = data[:6]
    if not (len(rand) == 16 and rand.isdigit() and stamp.isdigit() and kind.isdigit()):
        raise RemoteError("fwknop fields")
    client_timeout = 0
    if int(kind) in (ACCESS_WITH_TIMEOUT, 4, 6):
        if not data[-1].isdigit():
            raise RemoteError("fwknop fields")
        client_timeout = int(data[-1])
    try:
        user_text = unb64(user).decode("ascii")
        access_text = unb64(access).decode("ascii")
    except UnicodeDecodeError:
        raise RemoteError("fwknop fields") from None
    return Message(rand, user_text, int(stamp), version, int(kind), access_text, client_timeout)


def encode(
    user: str,
    access: str,
    key: bytes,
    hmac_key: bytes | None,
    *,
    timestamp: int,
    client_timeout: int = 0,
    hmac_type: str = "sha256",
    random: bytes | None = None,
) -> bytes:
    """Build a datagram as fwknop 2.6.10 does (``random``: 8 salt bytes + 8 for rand)."""
    random = random if random is not None else os.urandom(16)
    rand = str(int.from_bytes(random[8:16], "big") % 10**16).zfill(16)
    kind = ACCESS_WITH_TIMEOUT if client_timeout else ACCESS
    fields = [rand, b64(user.encode()), str(timestamp), VERSION, str(kind), b64(access.encode())]
    if client_timeout:
        fields.append(str(client_timeout))
    plaintext = ":".join(fields)
    plaintext += ":" + b64(hashlib.sha256(plaintext.encode()).digest())
    salt = random[:8]
    aes_key, iv = _key_iv(key, salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    raw = b"Salted__" + salt + encryptor.update(padded) + encryptor.finalize()
    body = b64(raw)[len(PREFIX) :]
    if hmac_key is not None:
        mac = hmac.digest(hmac_key, (PREFIX + body).encode("ascii"), hmac_type)
        body += _b64_tag(mac).decode("ascii")
    return body.encode("ascii")
