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

from collections import OrderedDict
from ipaddress import IPv6Address

from sesame.basics import Address
from sesame.errors import RemoteError

FAILURE_RATE, FAILURE_BURST = 1.0, 10  # failed datagrams a (user, source) may cost
FAILURE_SOURCES = 1 << 12  # (user, source) pairs remembered at once; the oldest go


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


class Failures:
    """What a stranger who knows a user's name can cost: datagrams that name the user
    and fail authentication, per (user, source; an IPv6 /64). A source that has failed
    ``burst`` times is not tried for that user again (nothing is decrypted) until its
    share refills at ``rate`` a second. The user sending from any other source is
    tried as before: a stranger cannot lock a user out from another address. Nor
    from the user's own, if the user opened from it within ``TRUSTED`` seconds (a
    stranger who forges that address is then tried, and costs decryptions).

    Each pair is one float (when its share will be whole again, as in GCRA), at most
    ``FAILURE_SOURCES`` of them: a flood from forged sources pushes out the oldest."""

    TRUSTED = 3600.0

    def __init__(self, rate: float = FAILURE_RATE, burst: int = FAILURE_BURST) -> None:
        self.step = 1.0 / rate
        self.span = burst * self.step  # how far ahead of now a full share may be spent
        # (user, source) -> when its share is whole again; -> until when it is trusted.
        # Ordered by last change: the oldest go first, in constant time.
        self._whole: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, int], float] = OrderedDict()

    @staticmethod
    def _key(name: str, source: Address) -> tuple[str, int]:
        number = int(source)
        if isinstance(source, IPv6Address):
            return name, (number >> 64 << 64) + (1 << 128)
        return name, number

    def over(self, name: str, source: Address, now: float) -> bool:
        """Has this source failed for this user more than its share?"""
        key = self._key(name, source)
        whole = self._whole.get(key)
        if whole is None or self._trusted.get(key, 0.0) > now:
            return False
        return whole - now > self.span - self.step

    def failed(self, name: str, source: Address, now: float) -> None:
        """A datagram from ``source`` naming ``name`` failed authentication."""
        key = self._key(name, source)
        whole = max(self._whole.pop(key, now), now)  # (re)inserted last: oldest go first
        if len(self._whole) >= FAILURE_SOURCES:
            self._whole.popitem(last=False)
        self._whole[key] = min(whole + self.step, now + self.span)

    def passed(self, name: str, source: Address, now: float) -> None:
        """A datagram from ``source`` authenticated as ``name``."""
        key = self._key(name, source)
        self._whole.pop(key, None)
        self._trusted.pop(key, None)
        if len(self._trusted) >= FAILURE_SOURCES:
            self._trusted.popitem(last=False)
        self._trusted[key] = now + self.TRUSTED
