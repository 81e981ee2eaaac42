"""``[cluster]``: where the store is, who this node is, and the cluster key.

The store is Redis or Valkey, named by a ``redis://`` (or ``rediss://``, TLS) URL that
holds no password: the password comes from ``password_file``, and neither ever
reaches a log. The cluster key (32 random bytes, base64, in ``key_file``) is the
same on every node; it authenticates what nodes tell each other through the store.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sesame.crypto import decode_key, read_private
from sesame.errors import FieldError

NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
KEYS = ("store", "password_file", "name", "node", "key_file", "on_store_down")
ON_STORE_DOWN = ("refuse", "local")


@dataclass(frozen=True, slots=True)
class Cluster:
    """The ``[cluster]`` table, with its key (and password) read."""

    store: str
    key: bytes = field(repr=False)
    password: str | None = field(default=None, repr=False)
    name: str = "sesame"  # the prefix of every key sesame writes in the store
    node: str = ""  # this node's name (the host name)
    on_store_down: str = "refuse"  # doors' default: "refuse" (fail closed) or "local"

    def __post_init__(self) -> None:
        where = urlsplit(self.store)
        if where.scheme not in ("redis", "rediss") or not where.hostname:
            raise FieldError(
                "store", 'store must be "redis://[USER@]HOST[:PORT][/DB]" (rediss:// for TLS)'
            )
        if where.password is not None:
            raise FieldError("store", "store holds a password: put it in password_file instead")
        try:
            where.port  # noqa: B018 (it checks the port)
        except ValueError:
            raise FieldError("store", "store's port must be a number from 1 to 65535") from None
        if where.path not in ("", "/") and not re.fullmatch(r"/\d{1,5}", where.path):
            raise FieldError("store", "store's database must be a number, as in redis://HOST/0")
        if not NODE_RE.match(self.name) or not NODE_RE.match(self.node):
            bad = "name" if not NODE_RE.match(self.name) else "node"
            raise FieldError(bad, f"{bad} must be 1-63 letters, digits, '_', '.' or '-'")
        if self.on_store_down not in ON_STORE_DOWN:
            raise FieldError("on_store_down", 'on_store_down must be "refuse" or "local"')

    @property
    def where(self) -> str:
        """The store's URL as logs may show it (it holds no password)."""
        return self.store


def from_toml(raw: dict[str, Any]) -> Cluster:
    """A :class:`Cluster` from the ``[cluster]`` table; FieldError names the key."""
    for name in raw:
        if name not in KEYS:
            raise FieldError(name, f"unknown key {name!r} in [cluster] (known: {', '.join(KEYS)})")
    for name in KEYS:
        if name in raw and not isinstance(raw[name], str):
            raise FieldError(name, f"{name} must be a string")
    for name in ("store", "key_file"):
        if name not in raw:
            raise FieldError("", f"[cluster] is missing {name!r}")
    text = _secret(raw["key_file"], "key_file")
    try:
        key = decode_key(text)
    except ValueError as exc:  # sesame keygen --cluster makes one
        raise FieldError("key_file", f"the cluster key: {exc}") from None
    password = _secret(raw["password_file"], "password_file") if "password_file" in raw else None
    if password is not None and not password:
        raise FieldError("password_file", "password_file is empty")
    node = raw.get("node", socket.gethostname().split(".")[0])
    return Cluster(
        raw["store"],
        key,
        password,
        raw.get("name", "sesame"),
        node,
        raw.get("on_store_down", "refuse"),
    )


def _secret(path: str, key: str) -> str:
    """The first line of a private file (a key, a password)."""
    if not path.startswith("/"):
        raise FieldError(key, f"{key} must be an absolute path")
    try:
        data = read_private(path, group=True)
    except ValueError as exc:
        raise FieldError(key, str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError(key, f"{path} is not text") from None
    lines = text.splitlines()
    return lines[0].strip() if lines else ""
