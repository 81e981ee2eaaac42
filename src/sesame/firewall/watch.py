"""Who changed sesame's table, and what that means: nftables' change notifications,
judged one transaction at a time (pure; the socket is :mod:`sesame.sensor.monitor`).

The kernel announces every change to the ruleset, object by object, then ends the
transaction with NEWGEN, which names the process that made it. sesame's own changes
are ignored. Another process's change to ``table inet <name>`` means:

=========================================  ===============================================
what another process changed               what sesame does
=========================================  ===============================================
the table, a chain, a rule, a set; the     *restore*: the table is installed again and
elements of ``knock``, ``guarded``,        every live grant added with the time it has
``public``, ``spa``, ``first``             left (a deleted or flushed gate fails open)
grant elements deleted (``sesame revoke``,  *revoke*: the grants read back are compared
``nft delete element``, a flushed set)     with sesame's own; the missing ones close
grant elements added, the scanner, first-  nothing: sesame's decisions stand, and the
knock and follow sets (the kernel's own    kernel's own state is the kernel's
dynamic state)
anything in another table                  nothing
=========================================  ===============================================

Notifications that were lost (the socket overflowed) are judged as *unknown*: the
daemon then looks at the table itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sesame.firewall.netlink import DELSETELEM, NEWGEN, NEWSETELEM, NFPROTO_INET, Notice

GRANT_SETS = frozenset(("grants4", "grants6"))
KERNEL_STATE = frozenset(("noisy4", "noisy6", "hits4", "hits6", "follow4", "follow6"))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a batch of notifications asks of the daemon, and who made the change."""

    restore: bool = False
    revoke: bool = False
    unknown: bool = False
    by: tuple[int, ...] = ()  # the processes that changed the table

    def __bool__(self) -> bool:
        return self.restore or self.revoke or self.unknown


@dataclass
class Watch:
    """Judges notifications for table ``inet <table>``; ``own``: sesame's process id."""

    table: str
    own: int
    _pending: list[Notice] = field(default_factory=list)

    def judge(self, batch: Iterable[Notice]) -> Verdict:
        """Take the notifications read so far; judge every transaction they end."""
        restore = revoke = False
        by: list[int] = []
        for notice in batch:
            if notice.kind != NEWGEN:
                self._pending.append(notice)
                continue
            ours, self._pending = self._pending, []
            if notice.pid == self.own:
                continue
            mine = [n for n in ours if n.family == NFPROTO_INET and n.table == self.table]
            wants_restore = any(_breaks_the_gate(n) for n in mine)
            wants_revoke = any(n.kind == DELSETELEM and n.set in GRANT_SETS for n in mine)
            if wants_restore or wants_revoke:
                restore |= wants_restore
                revoke |= wants_revoke
                by.append(notice.pid)
        return Verdict(restore, revoke, False, tuple(by))

    def lost(self) -> Verdict:
        """Notifications were lost: what they said is unknown."""
        self._pending = []
        return Verdict(unknown=True)


def _breaks_the_gate(notice: Notice) -> bool:
    if notice.kind in (NEWSETELEM, DELSETELEM):
        return notice.set not in GRANT_SETS and notice.set not in KERNEL_STATE
    return True
