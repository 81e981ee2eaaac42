"""Persistent state in ``[server] state_dir``: the replay window's keys.

An append-only file of fixed records, written with one ``write`` each (O_APPEND), so
an accepted SPA or one-time sequence is on record before its grant is made, and a
restarted daemon refuses it again. Records past their time are dropped when the file
is compacted (rewritten and renamed into place) at start-up and when it grows.

The directory must belong to sesame's user with no access for others, and no file in
it is opened through a symbolic link (:mod:`sesame.files`). What is read back is
judged like a packet: a record that could not have been written (a key of no length,
a time that is not a number or further ahead than any key can live) is dropped and
counted. Every write may fail (a full disk, a read-only file system): the caller is
told, and the record is not half written.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Iterable, Sequence

from sesame.files import FileRefused, open_owned, private_dir

RECORD = struct.Struct(">dB32s")  # until (Unix time), key length, key (padded)
NAME = "replay"
TEMP = "replay.new"
MAX_FILE = 64 << 20  # never read more than this: 1.6 million records
COMPACT_AT = 1024  # records (41 kB) before the file is rewritten with the live ones


class ReplayStore:
    """The replay file in a private state directory. ``horizon``: how many seconds
    ahead of the wall clock a key can be kept at most (longer: corrupt)."""

    def __init__(self, state_dir: str, horizon: float = 3600.0) -> None:
        self.dir = private_dir(state_dir)
        self.path = os.path.join(state_dir, NAME)
        self.horizon = horizon
        self.error: str | None = None  # why the last write failed, until one works
        self.rejected = 0  # records read back that could not have been written
        self.unreadable: str | None = None  # why the file could not be read back
        self._fd = -1
        self._size = 0  # of the file, as written: whole records only

    def load(self, wall: float) -> list[tuple[bytes, float]]:
        """The keys still inside their window; compacts the file to just those."""
        data = self._read()
        live = []
        for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
            until, length, key = RECORD.unpack_from(data, offset)
            if not (0 < length <= 32 and math.isfinite(until) and until <= wall + self.horizon):
                self.rejected += 1
            elif until >= wall:
                live.append((key[:length], until))
        if len(data) % RECORD.size:
            self.rejected += 1  # a torn last record
        self.compact(live)
        return live

    def _read(self) -> bytes:
        try:
            fd = os.open(NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            self.unreadable = exc.strerror or str(exc)
            return b""
        with os.fdopen(fd, "rb") as handle:
            return handle.read(MAX_FILE)

    def compact(self, live: Iterable[tuple[bytes, float]]) -> bool:
        """Rewrite the file with just ``live`` (atomically: a new file renamed into
        place). False, and the old file stays in use, if that cannot be done."""
        records = b"".join(RECORD.pack(until, len(key), key) for key, until in live)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(TEMP, dir_fd=self.dir)  # a leftover, never followed
            fd = open_owned(TEMP, dir_fd=self.dir)
            try:
                _write_all(fd, records)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(TEMP, NAME, src_dir_fd=self.dir, dst_dir_fd=self.dir)
            os.fsync(self.dir)
        except (OSError, FileRefused) as exc:
            self._failed(exc)
            return False
        self.close()
        self._size = len(records)
        return True

    def append(self, key: bytes, until: float) -> bool:
        """Put one key on record; False if it could not be written (then nothing of it
        is in the file, and ``error`` says why)."""
        return self.append_all([(key, until)])

    def append_all(self, keys: Sequence[tuple[bytes, float]]) -> bool:
        """Put keys on record in one write; False if it could not be written whole
        (then none of them is in the file, and ``error`` says why)."""
        record = b"".join(RECORD.pack(until, len(key), key) for key, until in keys)
        try:
            if self._fd < 0:
                self._fd = open_owned(NAME, append=True, dir_fd=self.dir)
                self._size = os.fstat(self._fd).st_size
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(28, os.strerror(28))  # a torn record: take it back below
        except (OSError, FileRefused) as exc:
            self._failed(exc)
            return False
        self._size += written
        self.error = None
        return True

    def _failed(self, exc: OSError | FileRefused) -> None:
        self.error = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        if self._fd >= 0:
            try:  # no torn record may stay behind: records are read back by offset
                os.ftruncate(self._fd, self._size)
            except OSError:
                self.close()

    @property
    def damaged(self) -> bool:
        """Were keys lost when the file was read back (so recent messages could be
        replayed unless refused by their time)?"""
        return bool(self.rejected or self.unreadable)

    def should_compact(self, live: int) -> bool:
        records = self._size // RECORD.size
        return records > COMPACT_AT and records > 2 * live

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def shut(self) -> None:
        """Close the file and the directory."""
        self.close()
        os.close(self.dir)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
