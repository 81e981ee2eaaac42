"""The table kept whole: what another process changed in sesame's table is undone
(see :mod:`sesame.firewall.watch`), and grants deleted from the kernel before their
time are closed as revoked (``sesame revoke``, an operator)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sesame.basics import Address
from sesame.config import Config
from sesame.engine import Action, Engine, Refreshed
from sesame.engine.events import Element
from sesame.errors import FirewallError
from sesame.firewall.elements import Entry, Listed, to_grants
from sesame.firewall.gate import Gate
from sesame.firewall.watch import Verdict

log = logging.getLogger("sesame")
KEPT_SHOWN = 100  # grants kept at start-up logged one by one; beyond, counted per door
AT_ONCE = 1000  # grant elements adopted before start-up is done; beyond, while serving
SLICE = 200  # elements adopted at one turn of the loop, while serving (10 ms or so)


def sort(entries: list[Entry], config: Config) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """The grant elements found in the kernel at start-up, sorted: those to keep (with
    only the holders whose door still opens the port), the stale ones (no holder's
    door opens it any more) and, of those kept, the ones that lost a holder."""
    opens = config.gated
    keep, stale, mixed = [], [], []
    for entry in entries:
        every = entry.held()
        held = tuple(h for h in every if entry.port in opens.get(h.door, ()))
        if not held:
            stale.append(entry)
            continue
        if len(held) != len(every):
            entry = replace(entry, holders=held)
            mixed.append(entry)
        keep.append(entry)
    return keep, stale, mixed


def adopt(entries: list[Entry], config: Config) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """:func:`sort`, and what is kept logged (one line a grant, or a count a door)."""
    keep, stale, mixed = sort(entries, config)
    if len(keep) > KEPT_SHOWN:  # a line each would flood the log at start-up
        log.info("kept %d grants (%s)", len(keep), _per_door(keep))
        return keep, stale, mixed
    for entry in keep:
        for h in entry.held():
            log.info(
                "kept grant of door %s for %s: %s (%.0fs left)",
                *(h.door, entry.address, entry.port, entry.left - h.before),
            )
    return keep, stale, mixed


def _per_door(entries: list[Entry]) -> str:
    return _doors(_by_door(entries))


def _by_door(entries: list[Entry]) -> Counter[str]:
    """The grants these elements hold, by door."""
    return Counter(h.door for entry in entries for h in entry.held())


def _doors(counts: Counter[str]) -> str:
    return ", ".join(f"door {door}: {n}" for door, n in sorted(counts.items()))


class Adoption:
    """The grant elements found at start-up when there are many, adopted while the
    daemon serves: the kernel enforces them all the while; the elements of a source
    are adopted before anything is decided about it (:meth:`source`), and the rest a
    slice at each turn of the loop (:meth:`some`)."""

    def __init__(self, listed: Listed[Any], engine: Engine, gate: Gate, at: float) -> None:
        self.listed, self.engine, self.gate = listed, engine, gate
        self.at = at  # when the elements were listed (their time left counts from then)
        self.kept: Counter[str] = Counter()  # grants kept, by door
        self.started = time.monotonic()
        self.said = False  # the line that says they are all adopted

    @property
    def done(self) -> bool:
        return self.listed.left == 0

    def source(self, address: Address, config: Config, now: float) -> None:
        self._adopt(self.listed.take(address), config, now)

    def some(self, config: Config, now: float) -> None:
        self._adopt(self.listed.take_some(SLICE), config, now)

    def all(self, config: Config, now: float) -> None:
        self._adopt(self.listed.rest(), config, now)

    def _adopt(self, entries: list[Entry], config: Config, now: float) -> None:
        if entries:
            keep, stale, mixed = sort(entries, config)
            self.engine.restore(to_grants(keep, self.at))
            self.kept += _by_door(keep)
            # The stale go; where some holders are gone, the rest hold until their deadline.
            changed = [Element(e.address, e.port, None) for e in stale]
            changed += [self.engine.element(e.address, e.port) for e in mixed]
            try:
                if changed:
                    self.gate.apply(changed, now)
            except FirewallError as exc:
                log.error("cannot update grants kept from before: %s", exc)
        if self.done and not self.said:
            self.said = True
            log.info(
                "kept %d grants (%s), adopted while serving in %.1f s",
                self.kept.total(),
                _doors(self.kept),
                time.monotonic() - self.started,
            )


class Keeper:
    """Restores the table of a daemon's engine and gate; ``carry_out`` carries out
    the closes that a revoke decides."""

    def __init__(
        self,
        engine: Engine,
        gate: Gate,
        carry_out: Callable[[Sequence[Action], float], None],
        reports: Counter[str],
    ) -> None:
        self.engine = engine
        self.gate = gate
        self.carry_out = carry_out
        self.reports = reports
        self.restored_at = -float("inf")
        self.retry_at: float | None = None  # a failed restore is tried again then

    def changed(self, config: Config, verdict: Verdict, now: float) -> None:
        """Another process changed sesame's table."""
        table = config.server.table
        by = ", ".join(f"process {pid}" for pid in verdict.by) or "another process"
        if verdict.unknown:
            log.warning("nftables changes were missed: checking table inet %s", table)
            if not self.gate.exists():
                self.restore(config, now, "the table is gone")
                return
            self.reconcile(now)
            self.restore(config, now, "changes were missed", grants=False)
            return
        if verdict.revoke:
            self.reconcile(now)
        if verdict.restore:
            if 0 in verdict.by and now < self.restored_at + 1.0:
                # A kernel that names no process: what it reports may be sesame's own
                # restore, which must not be restored again without end.
                self.retry_at = self.restored_at + 1.0
                return
            self.restore(config, now, f"{by} changed table inet {table}")

    def reconcile(self, now: float) -> None:
        """Close the grants whose elements are gone from the kernel before their time:
        they are logged as revoked, their doors' stop commands run, and a knock opens
        them anew (start commands run again)."""
        try:
            live = {(h.door, e.address, e.port) for e in self.gate.entries() for h in e.held()}
        except FirewallError as exc:
            log.error("cannot read the grants back: %s", exc)
            return
        actions: list[Action] = []
        for grant in self.engine.grants.all():
            gone = any((grant.door, grant.address, p) not in live for p in grant.ports)
            if gone and grant.door in self.engine.gated and grant.expires > now + 1.0:
                actions += self.engine.revoke(grant.door, grant.address)
        self.carry_out(actions, now)

    def restore(self, config: Config, now: float, why: str, grants: bool = True) -> None:
        """Install the table again, with every live grant for the time it has left
        (unless the grant sets were left alone) and the sources sesame follows: the
        gate is never left open."""
        self.restored_at = now
        started = time.monotonic()
        held = self.engine.grants.all() if grants else []
        live = [g for g in held if g.door in self.engine.gated and g.expires > now]
        mode = self.engine.stage
        try:
            self.gate.install(config, (), mode.ports, mode.first)
            self.gate.apply(self.engine.elements(Refreshed(g) for g in live), now)
            if mode.first is not None:
                self.gate.set_knock_ports(mode.ports, mode.first, self.engine.tracked())
        except FirewallError as exc:
            self.retry_at = now + 1.0
            log.error("%s; restoring it failed (%s): trying again in a second", why, exc)
            return
        self.retry_at = None
        self.reports["restored"] += 1
        log.warning(
            "%s: restored it with %d live grants in %.0f ms",
            why,
            len(live),
            (time.monotonic() - started) * 1000,
        )

    def tick(self, config: Config, now: float) -> None:
        if self.retry_at is not None and now >= self.retry_at:
            self.restore(config, now, "trying again")
