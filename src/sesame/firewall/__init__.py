"""Firewall backends: the nftables gate, per-door commands, and an in-memory fake."""

from sesame.firewall.elements import Entry
from sesame.firewall.memory import MemoryGate
from sesame.firewall.nftables import NftGate

__all__ = ["Entry", "MemoryGate", "NftGate"]
