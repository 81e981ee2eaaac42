"""Knocks: plain sequences, knockd's one-time sequence files and rolling one-time
sequences (one per user, door and 30-second step, each spent once).

The matching itself is :mod:`sesame.engine.sequences`; this module keeps its
patterns in step with the config, the clock and the one-time files, and turns
completed sequences into actions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Sequence

from sesame.basics import Port
from sesame.doors import Door, User
from sesame.engine import totp
from sesame.engine.events import Action, Knock, SequenceUsed, Spent
from sesame.engine.policy import Policy, admission
from sesame.engine.replay import ReplayWindow
from sesame.engine.sequences import Pattern, SequenceMatcher, Target


def one_time_patterns(
    doors: Iterable[Door],
    users: Iterable[User],
    subkeys: dict[str, bytes],
    step: int,
    spent: Container[bytes],
    first_step: int = 0,
) -> list[Pattern]:
    """Every user's unspent one-time sequences for the previous, current and next step
    (none before ``first_step``)."""
    patterns = []
    for door in doors:
        if door.sequence_from != "totp" or door.port_range is None:
            continue
        for user in users:
            if door.name not in user.doors:
                continue
            key = subkeys.get(user.name) or totp.subkey(user.key)
            for s in (step - 1, step, step + 1):
                if s < first_step or totp.spent_key(door.name, user.name, s) in spent:
                    continue
                ports = totp.sequence(key, door.name, s, door.port_range, door.sequence_length)
                patterns.append(
                    Pattern(Target(door.name, "open", user.name, s), ports, door.seq_timeout)
                )
    return patterns


def knock_ports(
    doors: Sequence[Door], users: Sequence[User], wall: float, spent: Container[bytes]
) -> frozenset[Port]:
    """The knock ports the kernel must pass for a config at ``wall`` (fixed and
    one-time), without changing any engine: for checking a reload before applying it."""
    fixed = {p for door in doors for _, seq in door.sequences() for p in seq}
    rolling = one_time_patterns(doors, users, {}, totp.step_of(wall), spent)
    return frozenset(fixed | {p for pattern in rolling for p in pattern.ports})


class Knocks:
    """The patterns a knock may complete, and what completing one does."""

    def __init__(
        self, policy: Policy, replay: ReplayWindow, counters: Counter[str], max_sources: int
    ) -> None:
        self.policy = policy
        self.replay = replay
        self.counters = counters
        self.matcher = SequenceMatcher((), max_sources)
        self.doors: dict[str, Door] = {}
        self.users: dict[str, User] = {}
        self.one_time: dict[str, tuple[Port, ...]] = {}  # current sequence of a file's door
        self.upcoming: dict[str, tuple[Port, ...]] = {}  # and the next, passed already
        self.static: list[Pattern] = []
        self.totp_doors: list[Door] = []
        self.totp_keys: dict[str, bytes] = {}
        self.step: int | None = None

    def configure(self, doors: Sequence[Door], users: Sequence[User], max_sources: int) -> None:
        """Take a config (the first, or a new one): attempts on patterns that remain
        carry on; a door's one-time file sequence stays until it is loaded again."""
        self.doors = {door.name: door for door in doors}
        self.users = {user.name: user for user in users}
        self.totp_doors = [d for d in doors if d.sequence_from == "totp"]
        self.totp_keys = {
            u.name: totp.subkey(u.key)
            for u in users
            if any(d.name in u.doors for d in self.totp_doors)
        }
        self.one_time = {
            name: ports
            for name, ports in self.one_time.items()
            if name in self.doors and self.doors[name].one_time_sequences
        }
        self.upcoming = {}
        self.static = self._fixed_patterns()
        self.matcher.max_sources = max_sources
        self.matcher.set_patterns(self.static)
        self.step = None

    def _fixed_patterns(self) -> list[Pattern]:
        patterns = []
        for door in self.doors.values():
            sequences = list(door.sequences())
            if door.one_time_sequences:
                current = self.one_time.get(door.name)
                sequences = [("open", current)] if current else []
            for kind, ports in sequences:
                target = Target(door.name, kind)
                patterns.append(
                    Pattern(target, ports, door.seq_timeout, door.tcp_flags, door.target)
                )
        return patterns

    def set_sequence(
        self, door: str, ports: tuple[Port, ...] | None, upcoming: tuple[Port, ...] = ()
    ) -> None:
        """The current sequence of a door with a one-time sequence file (None: used up,
        the door is closed for good); ``upcoming`` is the next one, whose ports the
        kernel passes already."""
        self.upcoming[door] = upcoming
        if ports:
            self.one_time[door] = ports
        else:
            self.one_time.pop(door, None)
        self.static = self._fixed_patterns()
        rolling = [p for p in self.matcher.patterns.values() if p.target.user]
        self.matcher.set_patterns(self.static + rolling)

    def ports(self) -> frozenset[Port]:
        """Every port some sequence uses now (fixed, one-time file, rolling)."""
        now = {p for pattern in self.matcher.patterns.values() for p in pattern.ports}
        return frozenset(now | {p for ports in self.upcoming.values() for p in ports})

    def roll(self, wall: float, not_before: float) -> frozenset[Port] | None:
        """When the 30-second step changes, recompute the one-time sequences (none
        stamped before ``not_before``). Returns every knock port the kernel must pass
        now, or None if that did not change."""
        step = totp.step_of(wall)
        if step == self.step:
            return None
        self.step = step
        patterns = self.static + one_time_patterns(
            self.totp_doors,
            self.users.values(),
            self.totp_keys,
            step,
            self.replay,
            totp.step_of(not_before) + 2 if not_before else 0,
        )
        self.matcher.set_patterns(patterns)
        return frozenset(p for pattern in patterns for p in pattern.ports)

    def next_roll(self) -> float | None:
        """When the next time step starts (wall time), if any door needs it."""
        if not self.totp_doors or self.step is None:
            return None
        return float((self.step + 1) * totp.STEP)

    def knock(self, knock: Knock, now: float) -> list[Action]:
        """Feed one knock packet; return what must happen now."""
        self.counters["knocks"] += 1
        evicted = self.matcher.evicted
        actions: list[Action] = []
        completed = self.matcher.feed(knock.source, knock.port, now, knock.flags, knock.destination)
        for target in completed:
            actions += self._completed(target, knock, now)
        if completed:
            self.counters["sequences completed"] += 1
        self.counters["evicted"] += self.matcher.evicted - evicted
        return actions

    def _completed(self, target: Target, knock: Knock, now: float) -> list[Action]:
        door = self.doors[target.door]
        if target.kind == "close":
            self.counters["unknocks"] += 1
            return list(self.policy.close(door.name, knock.source, "unknock"))
        if target.user:  # a one-time sequence: spend it
            key = totp.spent_key(door.name, target.user, target.step)
            until = totp.spent_until(target.step)
            if not self.replay.add(key, until):
                self.counters["replay window full"] += 1
                return []
            self.matcher.set_patterns(
                p for p in self.matcher.patterns.values() if p.target != target
            )
            return [Spent(key, until, admission(door, knock.source, target.user))]
        actions: list[Action] = []
        if door.one_time_sequences:
            current = self.one_time.get(door.name)
            if current is not None:
                actions.append(SequenceUsed(door.name, current))
                self.set_sequence(door.name, None)  # until the caller loads the next
        actions += self.policy.admit(admission(door, knock.source, target.user), now)
        return actions
