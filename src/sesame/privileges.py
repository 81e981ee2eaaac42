"""Running as a user of its own: ``sesame serve --user sesame`` started as root
becomes that user keeping CAP_NET_ADMIN alone (the one capability nftables and
NFLOG need), before it reads its config or any packet.

The capability stays effective, permitted, inheritable and ambient, so the commands
of doors run with the daemon's own privileges (as under systemd with
``AmbientCapabilities=CAP_NET_ADMIN``); every other capability leaves the bounding
set, and no program it starts can gain privileges (``no_new_privs``). Linux's
capability calls are made through ctypes: no compiled dependency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import os
import pwd

from sesame.errors import SesameError
from sesame.host import CAP_NET_ADMIN

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        raise SesameError(f"cannot drop privileges ({what}): {os.strerror(ctypes.get_errno())}")


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        return int(handle.read())


def drop_to(user: str) -> None:
    """Become ``user`` (its group and supplementary groups) with CAP_NET_ADMIN only.
    Needs root; SesameError says why it cannot."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SesameError(f"--user {user}: no such user on this host") from None
    if os.geteuid() != 0:
        raise SesameError(f"--user {user}: only root can become another user; start as root")
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    for cap in range(_last_cap() + 1):
        if cap != CAP_NET_ADMIN:
            _call(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "bounding set")
    _call(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep capabilities")
    os.initgroups(user, entry.pw_gid)
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    mask = 1 << CAP_NET_ADMIN
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)(_Data(mask, mask, mask), _Data(0, 0, 0))
    _call(libc.capset(ctypes.byref(header), data), "capset")
    _call(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0), "ambient")
    _call(libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "keep capabilities")
    _call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no new privileges")
    os.environ["HOME"] = entry.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = user


def who() -> str:
    """The user sesame runs as, for messages: ``user sesame (uid 998)``."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
    return "root" if uid == 0 else f"user {name} (uid {uid})"


def owner(path: str) -> str:
    """``root:sesame, mode 0640`` for a path (or why it cannot be looked at)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return exc.strerror or "cannot be looked at"
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{user}:{group}, mode {info.st_mode & 0o7777:04o}"


def denied(path: str) -> str:
    """Why a permission was denied on ``path`` and what to do: who sesame runs as,
    and who owns the nearest part of the path that exists."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe) and probe != "/":
        probe = os.path.dirname(probe)
    return (
        f"sesame runs as {who()}, and {probe} is {owner(probe)}: give that user the"
        " right (chown, or chgrp and chmod g+r for a config or key file), or run it as"
        " another user (--user)"
    )


def because(path: str, exc: OSError) -> str:
    """Why ``path`` could not be used: the error's reason and, for a permission
    denied, who runs sesame and who owns what stands in the way."""
    if exc.errno == errno.EACCES:
        return f"{exc.strerror}: {denied(path)}"
    return exc.strerror or str(exc)
