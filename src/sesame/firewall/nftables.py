"""The nftables gate: sesame's own table in the kernel. The table and its rules go
through libnftables (one atomic transaction each); grants and first knocks, the hot
path, go straight over netlink (:mod:`sesame.firewall.netlink`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sesame.basics import Address, Port
from sesame.config import Config
from sesame.engine.events import Element
from sesame.errors import FirewallError
from sesame.firewall import elements, netlink, ruleset
from sesame.firewall.elements import Entry, Listed
from sesame.firewall.libnft import Nft
from sesame.firewall.watch import GRANT_SETS

log = logging.getLogger("sesame")


class NftGate:
    """Installs the table, carries out grant decisions, reads live grants back."""

    def __init__(self, table: str, nft: Nft | None = None) -> None:
        self.table = table
        self.nft = nft or Nft()
        self.config: Config | None = None
        self._netlink: netlink.Netlink | None = None
        self._strays: list[tuple[str, bytes]] = []  # grant elements in another shard's set

    @property
    def netlink(self) -> netlink.Netlink:
        if self._netlink is None:
            self._netlink = netlink.Netlink(self.table)
        return self._netlink

    def install(
        self,
        config: Config,
        stale: Iterable[Entry] = (),
        knock: Iterable[Port] | None = None,
        first: Iterable[Port] | None = None,
    ) -> None:
        """Create or update the table atomically, deleting ``stale`` grant elements
        (and moving those the last listing found in another shard's set to theirs).
        ``first``: the first ports the kernel remembers (None: it passes every knock)."""
        self.config = config
        commands = ruleset.install(config, knock, first)
        if self._strays:  # their shards' sets first, then they move there
            self.nft.run(commands)
            commands, strays, self._strays = "", self._strays, []
            log.info("moving %d grant elements to their shard's set", len(strays))
            self.netlink.apply_units(netlink.move_steps(strays))
        for entry in stale:
            commands += "\n".join(elements.remove(self.table, entry.address, [entry.port])) + "\n"
        if commands:
            self.nft.run(commands)

    @property
    def portid(self) -> int:
        """The netlink port id of the socket grants go through (its changes are
        sesame's own)."""
        return int(self.netlink.sock.getsockname()[0])

    def apply(self, elements: Sequence[Element], now: float) -> None:
        """Put grant elements in the state the engine decided (many at once, as when
        the table is restored, in transactions of netlink.TRANSACTION messages each).
        Elements the engine takes for new are only created; if one was there after all
        (kept from before and not adopted yet, or added by another process), they are
        all put in place again as any other."""
        try:
            self.netlink.apply_units(netlink.grant_steps(elements, now))
        except netlink.Existed:
            log.debug("a grant element taken for new was there: replacing them all")
            self.netlink.apply_units(netlink.grant_steps(elements, now, trust=False))

    def set_knock_ports(
        self,
        ports: Iterable[Port],
        first: Iterable[Port] | None = None,
        tracked: Iterable[Address] | None = None,
    ) -> None:
        """Replace the knock ports (one-time sequences roll) and the first ports the
        kernel remembers by itself (None: none, every knock goes to userspace), in one
        transaction. ``tracked``, when the kernel takes first knocks over: the sources
        sesame follows already, whose knocks must keep coming (followed first)."""
        if tracked is not None and self.config is not None:
            seconds = self.config.longest_sequence
            self.netlink.apply(netlink.follow_steps(tracked, seconds, forget=False))
        lines = ruleset.fill(self.table, "knock", sorted(ports))
        if self.config is not None:
            lines += ruleset.knocks(self.config, first)
        self.nft.run("\n".join(lines) + "\n")

    def know(self, addresses: Iterable[Address], seconds: float) -> None:
        """Hear the SPA datagrams of ``addresses`` first, for ``seconds`` (one
        transaction; a full set leaves them with the rest)."""
        self.netlink.apply(netlink.known_steps(addresses, seconds))

    def first_hit(self, address: Address) -> tuple[Port | None, float] | None:
        """The first knock the kernel remembers of ``address``: (its port, its age in
        seconds), or None."""
        return self.netlink.hit(address)

    def take(self, addresses: Iterable[Address], seconds: float) -> None:
        """Forget the first knocks sesame read back, and follow their sources."""
        addresses = list(addresses)
        try:
            self.netlink.apply(netlink.follow_steps(addresses, seconds, forget=True))
        except FirewallError:  # a first knock expired meanwhile: one at a time
            for address in addresses:
                try:
                    self.netlink.apply(netlink.follow_steps([address], seconds, forget=True))
                except FirewallError:
                    self.netlink.apply(netlink.follow_steps([address], seconds, forget=False))

    def forget_hit(self, address: Address) -> None:
        """Delete the first knock the kernel remembers of ``address``, if any."""
        self.netlink.apply(netlink.forget_steps(address), missing_ok=True)

    def entries(self) -> list[Entry]:
        """Live grant elements; empty when the table does not exist."""
        return self._listed().rest()

    def listed(self) -> Listed[tuple[str, bytes]]:
        """Live grant elements by source, read when taken; none when the table does not
        exist. Over netlink: libnftables takes seconds to list 100,000 elements. Those
        found in another shard's set are moved to theirs by the install that follows
        (a start-up's)."""
        listed = self._listed()
        self._strays = listed.strays
        return listed

    def _listed(self) -> Listed[tuple[str, bytes]]:
        sets: dict[str, list[bytes]] = {}
        for name in sorted(GRANT_SETS):
            try:
                sets[name] = self.netlink.listing(name)
            except FirewallError:  # no such table, or a set a table from before lacks
                continue
        return netlink.listed(sets)

    def remove(self, entries: Iterable[Entry]) -> None:
        """Delete grant elements now (idempotent), in one transaction."""
        commands = [c for e in entries for c in elements.remove(self.table, e.address, [e.port])]
        if commands:
            self.nft.run("\n".join(commands) + "\n")

    def exists(self) -> bool:
        """Is the table there, with its grant sets (listing it whole would be slow)?"""
        try:
            self.nft.run(f"list set inet {self.table} grants6")
        except FirewallError:
            return False
        return True

    def dropped(self) -> dict[str, int]:
        """Packets each chain of the table dropped without passing them to sesame
        (junk that never reached Python), by the counters of its rules that drop and
        do not log; empty when the table cannot be read."""
        try:
            items = self.nft.json(f"list table inet {self.table}")
        except FirewallError:
            return {}
        named = {  # the table's named counters (two rules may count in one)
            str(c.get("name")): int(c.get("packets", 0))
            for item in items
            if isinstance(c := item.get("counter"), dict)
        }
        out: dict[str, int] = {}
        seen: set[tuple[str, str]] = set()
        for item in items:
            rule = item.get("rule")
            if not isinstance(rule, dict):
                continue
            exprs = [e for e in rule.get("expr", []) if isinstance(e, dict)]
            counted = [e["counter"] for e in exprs if "counter" in e]
            logged = any("log" in e for e in exprs)
            if not counted or logged or not any("drop" in e for e in exprs):
                continue
            chain, counter = str(rule.get("chain", "")), counted[0]
            if isinstance(counter, dict):
                out[chain] = out.get(chain, 0) + int(counter.get("packets", 0))
            elif (chain, str(counter)) not in seen:
                seen.add((chain, str(counter)))
                out[chain] = out.get(chain, 0) + named.get(str(counter), 0)
        return out

    def close(self) -> None:
        """Close the netlink socket (the table stays)."""
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
