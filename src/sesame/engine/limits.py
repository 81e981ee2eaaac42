"""Each key holder's share of what a flood of valid messages could use up.

A user (sesame's SPA) or an fwknop stanza (whose key is what a datagram proves) may
have ``burst`` messages accepted at once and ``rate`` a second after that; beyond,
its messages are refused before they take a place in the replay window or write a
log line. The share of the replay window a key holder can hold is so bounded by
``burst + rate * lifetime`` of a key, and another user is never refused for it.
Only authenticated messages count: a stranger who names a user cannot spend its
share.
"""

from __future__ import annotations

from sesame.basics import Address
from sesame.errors import RemoteError


class Buckets:
    """A token bucket per name (``now``: monotonic seconds)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._left: dict[str, tuple[float, float]] = {}  # name -> (tokens, when)

    def take(self, name: str, now: float) -> bool:
        """Spend one of ``name``'s tokens; False if it has none now."""
        tokens, when = self._left.get(name, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens < 1.0:
            self._left[name] = (tokens, now)
            return False
        self._left[name] = (tokens - 1.0, now)
        return True

    def keep(self, names: set[str], rate: float, burst: int) -> None:
        """A new config: forget names that are gone, take the new rate and burst."""
        self.rate, self.burst = rate, burst
        self._left = {n: v for n, v in self._left.items() if n in names}


class Shares:
    """The key holders' buckets, and who was refused what since the daemon last asked
    (for it to log: the engine writes no log)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.buckets = Buckets(rate, burst)
        self.over_rate: set[str] = set()  # key holders refused for their rate
        # Authentic messages refused for asking for another address than their source
        # (a client behind NAT, mostly): (key holder, source, asked).
        self.other_address: list[tuple[str, Address, Address]] = []

    def take(self, name: str, now: float) -> None:
        """Refuse an authentic message of a key holder over its rate."""
        if not self.buckets.take(name, now):
            self.over_rate.add(name)
            raise RemoteError("over the user's rate")

    def elsewhere(self, name: str, source: Address, asked: Address) -> RemoteError:
        """An authentic message asks to open for another address than its source."""
        self.other_address.append((name, source, asked))
        return RemoteError("address differs from source")
