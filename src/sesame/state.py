"""Persistent state in ``[server] state_dir``: the replay window's keys.

An append-only file of fixed records, written with one ``write`` each (O_APPEND), so
an accepted SPA or one-time sequence is on record before its grant is made, and a
restarted daemon refuses it again. Records past their time are dropped when the file
is compacted (rewritten and renamed into place) at start-up and when it grows.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

RECORD = struct.Struct(">dB32s")  # until (Unix time), key length, key (padded)
NAME = "replay"


class ReplayStore:
    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(state_dir, NAME)
        self._fd = -1
        self._records = 0

    def load(self, wall: float) -> list[tuple[bytes, float]]:
        """The keys still inside their window; compacts the file to just those."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            data = b""
        live = []
        for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
            until, length, key = RECORD.unpack_from(data, offset)
            if until >= wall and 0 < length <= 32:
                live.append((key[:length], until))
        self.compact(live)
        return live

    def compact(self, live: Iterable[tuple[bytes, float]]) -> None:
        records = [RECORD.pack(until, len(key), key) for key, until in live]
        temp = self.path + ".new"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(records))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._records = len(records)

    def append(self, key: bytes, until: float) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, RECORD.pack(until, len(key), key))
        self._records += 1

    def should_compact(self, live: int) -> bool:
        return self._records > 4096 and self._records > 2 * live

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
