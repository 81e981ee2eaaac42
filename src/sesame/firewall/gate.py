"""The seam between the daemon and a firewall: :class:`Gate`.

Two implementations honour it: :class:`~sesame.firewall.nftables.NftGate` (the
kernel) and :class:`~sesame.firewall.memory.MemoryGate` (a fake for tests, shipped in
:mod:`sesame.testing`). :func:`sesame.testing.check_gate` is the one suite of checks
both must pass. Every method raises :class:`~sesame.errors.FirewallError` when the
firewall refuses, and then leaves the firewall as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sesame.basics import Address, Port
from sesame.config import Config
from sesame.engine.events import Element
from sesame.firewall.elements import Entry, Listed


class Gate(Protocol):
    def install(
        self,
        config: Config,
        stale: Iterable[Entry] = (),
        knock: Iterable[Port] | None = None,
        first: Iterable[Port] | None = None,
    ) -> None:
        """Create the table for ``config``, or bring it up to date, in one transaction:
        live grant elements stay, except ``stale`` ones, which are deleted. ``knock``:
        the knock ports to pass (None: the config's fixed sequences); ``first``: the
        first ports whose first knocks the firewall remembers by itself (None: every
        knock is passed)."""

    def apply(self, elements: Sequence[Element], now: float) -> None:
        """Make each (address, port) element what the engine decided, in one
        transaction: held until ``element.until`` (engine time, ``now`` being now)
        with its holders listed, or gone when ``until`` is None. Whether or not it
        was there before."""

    def entries(self) -> list[Entry]:
        """The live grant elements with their holders and the time each has left;
        empty when the table is not there."""

    def listed(self) -> Listed[Any]:
        """The same elements by source, each group read when taken (a daemon that
        restarts reads the few it needs first)."""

    def set_knock_ports(
        self,
        ports: Iterable[Port],
        first: Iterable[Port] | None = None,
        tracked: Iterable[Address] | None = None,
    ) -> None:
        """Pass knocks to ``ports`` and remember first knocks on ``first`` (None: pass
        every knock), in one transaction. ``tracked``: sources whose knocks must keep
        coming (followed first), when the firewall takes first knocks over."""

    def know(self, addresses: Iterable[Address], seconds: float) -> None:
        """Pass the SPA datagrams of ``addresses`` (sources that opened) to sesame
        apart from the rest, for ``seconds``, to be heard first. One that is known
        already keeps its time."""

    def first_hit(self, address: Address) -> tuple[Port | None, float] | None:
        """The first knock the firewall remembers of ``address``: its port (None if
        what it holds is not a port) and its age in seconds; None if it has none."""

    def take(self, addresses: Iterable[Address], seconds: float) -> None:
        """Forget the first knocks of ``addresses`` and pass their knocks for
        ``seconds`` (sesame follows them). A first knock gone meanwhile is no fault."""

    def forget_hit(self, address: Address) -> None:
        """Forget the first knock of ``address``, if the firewall holds one."""

    def exists(self) -> bool:
        """Is the table there (with its grant sets)?"""

    def dropped(self) -> dict[str, int]:
        """Packets each chain dropped before sesame saw them, by chain (for metrics);
        empty where the firewall keeps no such counters."""
