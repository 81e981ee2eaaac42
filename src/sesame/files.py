"""Files the daemon writes (the state directory, the pid file, the log file), opened
so that nobody else can steer the writes: a symbolic link is never followed, and a
file or directory must belong to the user sesame runs as. Every refusal names the
cause and the fix."""

from __future__ import annotations

import os
import stat

from sesame.errors import SesameError
from sesame.privileges import because, denied, owner, who


class FileRefused(SesameError):
    """A file or directory sesame must write is not safe to write: the reason says
    what is wrong and how to fix it."""


def private_dir(path: str) -> int:
    """Open ``path`` as a directory only sesame's user may use, creating it (mode 700)
    if it is missing; returns its file descriptor (for ``dir_fd=``). Refused when it is
    a symbolic link, belongs to someone else, or is open to group or others."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise FileRefused(f"cannot create {path}: {because(path, exc)}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        what = "a symbolic link or not a directory" if exc.errno in (20, 40) else None
        what = what or because(path, exc)
        raise FileRefused(f"{path} cannot be used: {what}") from None
    info = os.fstat(fd)
    faults = []
    if info.st_uid != os.geteuid():
        faults.append(f"belongs to uid {info.st_uid}, not to {who()} who runs sesame")
    if info.st_mode & 0o077:
        faults.append(f"is open to group or others (mode {info.st_mode & 0o777:04o})")
    if faults:
        os.close(fd)
        raise FileRefused(
            f"{path} {' and '.join(faults)}: it holds the replay window, which others must"
            f" not change; run: chown {os.geteuid()} {path} && chmod 700 {path}"
        )
    return fd


def open_owned(
    path: str, *, append: bool = False, truncate: bool = False, dir_fd: int | None = None
) -> int:
    """Open a regular file for writing (created mode 600) without following a symbolic
    link; refused if it belongs to someone else or has another name (a hard link).
    It is truncated only once that is checked."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_APPEND if append else 0), 0o600, dir_fd=dir_fd)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == 40 else because(path, exc)
        raise FileRefused(f"cannot write {path}: {why}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
        os.close(fd)
        raise FileRefused(
            f"cannot write {path}: it is not a regular file of {who()} (who runs sesame)"
            " with one name; remove it or point the config elsewhere"
        )
    if truncate:
        os.ftruncate(fd, 0)
    return fd


def unwritable(path: str, directory: bool = False) -> str | None:
    """Why sesame (as the user it runs as) could not use ``path`` (a private
    directory, or a file it writes), without creating or changing anything; None
    when it could."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.lexists(parent) and parent != "/":
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{path} cannot be created: {denied(parent)}"
        return None
    except OSError as exc:
        return f"{path} cannot be looked at: {because(path, exc)}"
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    if not kind(info.st_mode):
        return f"{path} is not a {'directory' if directory else 'regular file'}"
    if info.st_uid != os.geteuid():
        return f"{path} is {owner(path)}, but sesame runs as {who()}: chown it to that user"
    if directory and info.st_mode & 0o077:
        return f"{path} is open to group or others (mode {info.st_mode & 0o777:04o}): chmod 700"
    return None
