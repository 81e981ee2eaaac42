"""What this host has, as sesame needs to know it: its network interfaces."""

from __future__ import annotations

import contextlib
import os
import socket


def interfaces() -> list[str]:
    """The names of this host's (this network namespace's) interfaces."""
    return sorted(name for _, name in socket.if_nameindex())


def missing_interface(name: str | None) -> str | None:
    """Why ``name`` cannot be listened on, or None when it is here (or not set)."""
    if name is None:
        return None
    try:
        socket.if_nametoindex(name)
    except OSError:
        return f'interface "{name}" does not exist on this host (it has: {", ".join(interfaces())})'
    return None


CAP_NET_ADMIN = 12


def can_admin_network() -> bool:
    """Does this process have CAP_NET_ADMIN (root has it), which nftables and NFLOG
    need?"""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


NEEDS_ADMIN = (
    "needs root or the capability CAP_NET_ADMIN (for example under systemd"
    " AmbientCapabilities=CAP_NET_ADMIN, or setpriv --inh-caps +net_admin"
    " --ambient-caps +net_admin)"
)


def nflog_holder(group: int) -> str | None:
    """Which process reads NFLOG group ``group`` in this network namespace ("pid N,
    name"), if it can be found out (it needs root to look into other processes)."""
    portid = None
    log = "/proc/net/netfilter/nfnetlink_log"
    with contextlib.suppress(OSError, ValueError), open(log) as handle:
        for line in handle:
            fields = line.split()
            if fields and int(fields[0]) == group:
                portid = int(fields[1])
    if portid is None:
        return None
    inode = None
    with contextlib.suppress(OSError, ValueError), open("/proc/net/netlink") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 9 and fields[1] == "12" and fields[2] == str(portid):
                inode = fields[9]
    if inode is None:
        return f"netlink port {portid}"
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    with open(f"/proc/{pid}/comm") as comm:
                        return f"pid {pid}, {comm.read().strip()}"
    return f"netlink port {portid}"
