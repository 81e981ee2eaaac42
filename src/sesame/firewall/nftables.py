"""The nftables gate: sesame's own table in the kernel, driven through libnftables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sesame.config import Config
from sesame.engine.events import Decision
from sesame.errors import FirewallError
from sesame.firewall import ruleset
from sesame.firewall.libnft import Nft
from sesame.firewall.ruleset import Entry
from sesame.ports import Port


class NftGate:
    """Installs the table, carries out grant decisions, reads live grants back."""

    def __init__(self, table: str, nft: Nft | None = None) -> None:
        self.table = table
        self.nft = nft or Nft()

    def install(
        self, config: Config, stale: Iterable[Entry] = (), knock: Iterable[Port] | None = None
    ) -> None:
        """Create or update the table atomically, deleting ``stale`` grant elements."""
        commands = ruleset.install(config, knock)
        for entry in stale:
            commands += "\n".join(ruleset.remove(self.table, entry.address, [entry.port])) + "\n"
        self.nft.run(commands)

    def apply(self, decisions: Sequence[Decision], now: float) -> None:
        """Carry out engine decisions in one transaction."""
        commands = ruleset.decisions(self.table, decisions, now)
        if commands:
            self.nft.run(commands)

    def set_knock_ports(self, ports: Iterable[Port]) -> None:
        """Replace the knock ports (one-time sequences roll) in one transaction."""
        self.nft.run("\n".join(ruleset.fill(self.table, "knock", sorted(ports))) + "\n")

    def entries(self) -> list[Entry]:
        """Live grant elements; empty when the table does not exist."""
        items = []
        for name in ("grants4", "grants6"):
            try:
                items += self.nft.json(f"list set inet {self.table} {name}")
            except FirewallError:
                return []
        return ruleset.parse_grants(items)

    def remove(self, entries: Iterable[Entry]) -> None:
        """Delete grant elements now (idempotent), in one transaction."""
        commands = [c for e in entries for c in ruleset.remove(self.table, e.address, [e.port])]
        if commands:
            self.nft.run("\n".join(commands) + "\n")

    def exists(self) -> bool:
        try:
            self.nft.run(f"list table inet {self.table}")
        except FirewallError:
            return False
        return True
