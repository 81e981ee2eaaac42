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
from dataclasses import dataclass

from sesame.wire.nftables import NFPROTO_INET, Notice
from sesame.wire.nftables import NFT_MSG_DELSETELEM as DELSETELEM
from sesame.wire.nftables import NFT_MSG_NEWGEN as NEWGEN
from sesame.wire.nftables import NFT_MSG_NEWSETELEM as NEWSETELEM

# Where grants live: this host's ports, paths and rewrites to other hosts, and a
# source's every path and rewrite (fwknop's FORWARD_ALL); the ``*6`` of IPv6.
GRANT_NAMES = ("grants", "paths", "dnat", "anywhere", "everything")
# This host's grants of a family are SHARDS sets, a source's set chosen by the low bits
# of its address's last byte: ``grants4`` (0) and ``grants4_1`` to ``grants4_3``. The
# kernel lists a set 32 KiB at a time, walking it from its start for each part, so a
# set of 100,000 takes about a second to list and four of 25,000 a seventh of that.
SHARDS = 4
SHARD_MASK = SHARDS - 1


def grant_set(n: str, shard: int) -> str:
    """The set of this host's grants of family ``n`` ("4" or "6") for ``shard``."""
    return f"grants{n}" if shard == 0 else f"grants{n}_{shard}"


def home_of(source: bytes) -> str:
    """The set of this host's grants for a source (its address's 4 or 16 bytes)."""
    return grant_set("4" if len(source) == 4 else "6", source[-1] & SHARD_MASK)


_SHARD_OF = {grant_set(n, shard): shard for n in "46" for shard in range(SHARDS)}
GRANT_SHARDS = tuple(_SHARD_OF)


def shard_of(name: str) -> int | None:
    """The shard of this host's grants that set ``name`` holds; None for another set."""
    return _SHARD_OF.get(name)


GRANT_SETS = frozenset(f"{name}{n}" for name in GRANT_NAMES for n in "46") | frozenset(GRANT_SHARDS)
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

    def __or__(self, other: Verdict) -> Verdict:
        return Verdict(
            self.restore or other.restore,
            self.revoke or other.revoke,
            self.unknown or other.unknown,
            self.by + other.by,
        )


@dataclass
class Watch:
    """Judges notifications for table ``inet <table>``; ``own``: sesame's process id.
    What a transaction did is kept as two flags until its NEWGEN arrives, so a
    transaction of a million elements costs no memory."""

    table: str
    own: int
    _restore: bool = False
    _revoke: bool = False

    def judge(self, batch: Iterable[Notice]) -> Verdict:
        """Take the notifications read so far; judge every transaction they end."""
        verdict = Verdict()
        for notice in batch:
            if notice.kind == NEWGEN:
                restore, revoke = self._restore, self._revoke
                self._restore = self._revoke = False
                if notice.pid != self.own and (restore or revoke):
                    verdict = verdict | Verdict(restore, revoke, False, (notice.pid,))
            elif notice.family == NFPROTO_INET and notice.table == self.table:
                self._restore |= _breaks_the_gate(notice)
                self._revoke |= notice.kind == DELSETELEM and notice.set in GRANT_SETS
        return verdict

    def lost(self) -> Verdict:
        """Notifications were lost: what they said is unknown."""
        self._restore = self._revoke = False
        return Verdict(unknown=True)


def _breaks_the_gate(notice: Notice) -> bool:
    if notice.kind in (NEWSETELEM, DELSETELEM):
        return notice.set not in GRANT_SETS and notice.set not in KERNEL_STATE
    return True
