"""Firewall backends: the nftables gate, per-door commands, and an in-memory fake."""

from sesame.firewall.memory import MemoryGate
from sesame.firewall.nftables import NftGate
from sesame.firewall.ruleset import Entry

__all__ = ["Entry", "MemoryGate", "NftGate"]
