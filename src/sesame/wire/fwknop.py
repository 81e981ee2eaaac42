"""fwknop 2.x SPA datagrams (Rijndael mode with HMAC), as Debian's fwknop 2.6.10 makes
them: the wire format that sesame accepts from fwknop clients and sends to fwknopd.

    wire      = b64(ciphertext) without "U2FsdGVkX1" and "=" | b64(HMAC) without "="
    HMAC      = HMAC-<digest>(hmac key, "U2FsdGVkX1" + b64(ciphertext) without "=")
    ciphertext = "Salted__" | salt (8) | AES-256-<mode>(key, iv, PKCS#7(plaintext))
    key, iv   = OpenSSL EVP_BytesToKey(MD5, 1 round, password = the key, salt)
    plaintext = rand:b64(user):timestamp:version:type:b64(message)[:...]:b64(digest)

The mode is CBC (fwknop's default), or CTR, CFB, OFB as fwknop's ``-M`` makes them:
the standard modes with the same IV, padding included. "legacy" is CBC whose password
is cut or padded with "0" to 16 bytes (fwknop before 2.0). The digest inside is any
of fwknop's, told apart by its length (SHA-256 unless the client chose another).

The HMAC is compared in constant time before anything is decrypted. Every fault in
input raises RemoteError with a short reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives import hmac as keyed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # CFB and OFB moved to "decrepit" in cryptography 43; Debian 12 has 38
    from cryptography.hazmat.decrepit.ciphers.modes import CFB, OFB
except ImportError:  # pragma: no cover - depends on the installed cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB, OFB

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
# The same digests for the HMAC that each datagram is checked with (cryptography's:
# copying its keyed state costs less a datagram than the standard library's).
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_512": hashes.SHA3_512,
}
DIGESTS = {  # the digest inside, by the length of its base64
    22: ("md5",),
    27: ("sha1",),
    43: ("sha256", "sha3_256"),
    64: ("sha384",),
    86: ("sha512", "sha3_512"),
}
DIGEST_TYPES = tuple(name for names in DIGESTS.values() for name in names)
MODES: dict[str, Callable[[bytes], modes.ModeWithInitializationVector | modes.ModeWithNonce]] = {
    "cbc": modes.CBC,
    "ctr": modes.CTR,
    "cfb": CFB,
    "ofb": OFB,
    "legacy": modes.CBC,
}
VERSION = "3.0.0"
ACCESS, ACCESS_WITH_TIMEOUT = 1, 3
NAT, NAT_WITH_TIMEOUT, LOCAL_NAT, LOCAL_NAT_WITH_TIMEOUT = 2, 4, 5, 6
NAT_KINDS = (NAT, NAT_WITH_TIMEOUT, LOCAL_NAT, LOCAL_NAT_WITH_TIMEOUT)
TIMED = (ACCESS_WITH_TIMEOUT, NAT_WITH_TIMEOUT, LOCAL_NAT_WITH_TIMEOUT)
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"  # no padding
# The first character on the wire (after the stripped prefix): the base64 digit that
# ends b"Salted__" and begins the salt. Any other cannot decrypt.
FIRST = b"+/89"


def lengths(tag: int) -> frozenset[int]:
    """Every size a datagram can have and still decrypt, when its HMAC field has
    ``tag`` characters (0: no HMAC): "Salted__", 8 bytes of salt and whole 16-byte
    blocks, in base64 without padding, less the stripped prefix, then the tag. The
    kernel drops the other sizes (see sesame.firewall.ruleset)."""
    out, raw = set(), 32
    while (size := (4 * raw + 2) // 3 - len(PREFIX) + tag) <= MAX_SIZE:
        if size >= MIN_SIZE:
            out.add(size)
        raw += 16
    return frozenset(out)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RemoteError("fwknop base64") from None


def _key_iv(password: bytes, salt: bytes, mode: str = "cbc") -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with MD5 and one round (no library offers it); in
    legacy mode the password is first cut or padded with "0" to 16 bytes."""
    if mode == "legacy":
        password = password[:16].ljust(16, b"0")
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

    __slots__ = ("_keyed", "_mode", "_tag")

    def __init__(
        self, hmac_key: bytes | None, hmac_type: str = "sha256", mode: str = "cbc"
    ) -> None:
        self._keyed = None
        if hmac_key is not None:
            self._keyed = keyed.HMAC(hmac_key, _HASHES[hmac_type]())
            self._keyed.update(_PREFIX)
        self._tag = HMAC_TYPES[hmac_type]
        self._mode = mode

    def fault(self, wire: bytes) -> str | None:
        """The cheap checks, then the HMAC: what is wrong with a datagram (a
        RemoteError reason), or None if it may be decrypted. Returns rather than
        raises: under a flood of junk, most datagrams end here."""
        if not MIN_SIZE <= len(wire) <= MAX_SIZE or wire.translate(None, _B64):
            return "fwknop size or charset"  # (what is left without base64 digits)
        if wire.startswith(_PREFIX):
            return "fwknop prefix"
        if self._keyed is not None:
            mac = self._keyed.copy()
            mac.update(wire[: -self._tag])
            if not same(_b64_tag(mac.finalize()), wire[-self._tag :]):
                return "fwknop bad hmac"
        return None

    def open(self, wire: bytes, key: bytes) -> Message:
        """Decrypt a datagram :meth:`fault` passed (whether it was seen before is the
        caller's to ask first)."""
        tagless = wire[: -self._tag] if self._keyed is not None else wire
        return _open(_PREFIX + tagless, key, self._mode)


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
    nat_access: str = ""  # a NAT request's "IP,PORT" (fwknop's -N, --nat-local)


def decode(
    wire: bytes,
    key: bytes,
    hmac_key: bytes | None,
    hmac_type: str = "sha256",
    mode: str = "cbc",
) -> Message:
    """Verify and decrypt one datagram for one stanza's keys."""
    verifier = Verifier(hmac_key, hmac_type, mode)
    reason = verifier.fault(wire)
    if reason is not None:
        raise RemoteError(reason)
    return verifier.open(wire, key)


def _open(body: bytes, key: bytes, mode: str) -> Message:
    """Decrypt ``body`` (a datagram's base64 ciphertext) once its HMAC holds."""
    raw = unb64(body.decode("ascii"))
    if len(raw) < 32 or not raw.startswith(b"Salted__") or (len(raw) - 16) % 16:
        raise RemoteError("fwknop ciphertext")
    aes_key, iv = _key_iv(key, raw[8:16], mode)
    decryptor = Cipher(algorithms.AES(aes_key), MODES[mode](iv)).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    try:
        plaintext = _unpad(padded).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise RemoteError("fwknop decrypt") from None
    return _parse(plaintext)


def _unpad(padded: bytes) -> bytes:
    """``padded`` less its PKCS#7 padding (1 to 16 bytes, each the count); ValueError
    if there is none. By hand: the library's unpadder, on the path of every knock, cost
    about 50 µs on a quiet daemon whose caches had gone cold (2 µs warm). (No padding
    oracle: the sender is told nothing.)"""
    count = padded[-1]
    if not 1 <= count <= 16 or padded[-count:] != bytes((count,)) * count:
        raise ValueError("padding")
    return padded[:-count]


def _parse(plaintext: str) -> Message:
    if not 36 <= len(plaintext) <= MAX_SIZE or not plaintext.isprintable():
        raise RemoteError("fwknop plaintext")
    fields = plaintext.split(":")
    if not 6 <= len(fields) - 1 <= 9:
        raise RemoteError("fwknop fields")
    *data, digest = fields
    signed = ":".join(data).encode("ascii")
    candidates = DIGESTS.get(len(digest), ())
    if not any(same(_digest(name, signed).encode(), digest.encode()) for name in candidates):
        raise RemoteError("fwknop digest")
    rand, user, stamp, version, kind, access = data[:6]
    if not (len(rand) == 16 and rand.isdigit() and stamp.isdigit() and kind.isdigit()):
        raise RemoteError("fwknop fields")
    client_timeout = 0
    if int(kind) in TIMED:
        if not data[-1].isdigit():
            raise RemoteError("fwknop fields")
        client_timeout = int(data[-1])
    nat = int(kind) in NAT_KINDS
    if nat and len(data) < 7:
        raise RemoteError("fwknop fields")
    try:
        user_text = unb64(user).decode("ascii")
        access_text = unb64(access).decode("ascii")
        nat_text = unb64(data[6]).decode("ascii") if nat else ""
    except UnicodeDecodeError:
        raise RemoteError("fwknop fields") from None
    return Message(
        rand, user_text, int(stamp), version, int(kind), access_text, client_timeout, nat_text
    )


def _digest(name: str, data: bytes) -> str:
    return b64(hashlib.new(name, data).digest())


def encode(
    user: str,
    access: str,
    key: bytes,
    hmac_key: bytes | None,
    *,
    timestamp: int,
    client_timeout: int = 0,
    hmac_type: str = "sha256",
    digest_type: str = "sha256",
    mode: str = "cbc",
    random: bytes | None = None,
    nat_access: str = "",
    local_nat: bool = False,
) -> bytes:
    """Build a datagram as fwknop 2.6.10 does (``random``: 8 salt bytes + 8 for rand);
    with ``nat_access`` ("IP,PORT"), a NAT request (``local_nat``: fwknop's
    --nat-local)."""
    random = random if random is not None else os.urandom(16)
    rand = str(int.from_bytes(random[8:16], "big") % 10**16).zfill(16)
    if nat_access:
        plain, timed = (LOCAL_NAT, LOCAL_NAT_WITH_TIMEOUT) if local_nat else (NAT, NAT_WITH_TIMEOUT)
    else:
        plain, timed = ACCESS, ACCESS_WITH_TIMEOUT
    kind = timed if client_timeout else plain
    fields = [rand, b64(user.encode()), str(timestamp), VERSION, str(kind), b64(access.encode())]
    if nat_access:
        fields.append(b64(nat_access.encode()))
    if client_timeout:
        fields.append(str(client_timeout))
    plaintext = ":".join(fields)
    plaintext += ":" + _digest(digest_type, plaintext.encode())
    salt = random[:8]
    aes_key, iv = _key_iv(key, salt, mode)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), MODES[mode](iv)).encryptor()
    raw = b"Salted__" + salt + encryptor.update(padded) + encryptor.finalize()
    body = b64(raw)[len(PREFIX) :]
    if hmac_key is not None:
        mac = hmac.digest(hmac_key, (PREFIX + body).encode("ascii"), hmac_type)
        body += _b64_tag(mac).decode("ascii")
    return body.encode("ascii")
