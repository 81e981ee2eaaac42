"""What this host has, as sesame needs to know it: its network interfaces."""

from __future__ import annotations

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
