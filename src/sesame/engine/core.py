"""The engine: knocks and SPA datagrams in, actions out. No sockets, no clock, no
subprocess: ``now`` (monotonic, for deadlines) and ``wall`` (Unix time, for
timestamps and time steps) are passed in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Sequence

from sesame.doors import Door, User
from sesame.engine import totp
from sesame.engine.events import Action, Address, Closed, Grant, Knock, Opened, Spent
from sesame.engine.grants import GrantBook
from sesame.engine.replay import ReplayWindow
from sesame.engine.sequences import Pattern, SequenceMatcher, Target
from sesame.errors import RemoteError
from sesame.ports import Port
from sesame.wire import spa


def one_time_patterns(
    doors: Iterable[Door],
    users: Iterable[User],
    subkeys: dict[str, bytes],
    step: int,
    spent: Container[bytes],
) -> list[Pattern]:
    """Every user's unspent one-time sequences for the previous, current and next step."""
    patterns = []
    for door in doors:
        if door.sequence_from != "totp" or door.port_range is None:
            continue
        for user in users:
            if door.name not in user.doors:
                continue
            key = subkeys.get(user.name) or totp.subkey(user.key)
            for s in (step - 1, step, step + 1):
                if totp.spent_key(door.name, user.name, s) in spent:
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


class Engine:
    """Sequence matching, SPA verification and grant bookkeeping for a set of doors.

    Every method returns the actions the caller must carry out (open, refresh, close,
    persist a spent key). ``counters`` counts what happened, by name. Methods that
    judge remote input raise :class:`RemoteError` with a reason and change nothing.
    """

    def __init__(
        self,
        doors: Sequence[Door],
        users: Sequence[User] = (),
        *,
        max_sources: int = 100_000,
        spa_window: int = 60,
        replay_cap: int = 1_000_000,
    ) -> None:
        self.grants = GrantBook()
        self.replay = ReplayWindow(replay_cap)
        self.counters: Counter[str] = Counter()
        self.matcher = SequenceMatcher((), max_sources)
        self._setup(doors, users, max_sources, spa_window)

    def _setup(
        self, doors: Sequence[Door], users: Sequence[User], max_sources: int, spa_window: int
    ) -> None:
        self.doors = {door.name: door for door in doors}
        self.users = {user.name: user for user in users}
        self.spa_window = spa_window
        self.spa_ports = frozenset(d.spa_port for d in doors if d.spa_port is not None)
        self._ciphers = {u.name: spa.cipher(u.key) for u in users}
        self._totp_doors = [d for d in doors if d.sequence_from == "totp"]
        self._totp_keys = {
            u.name: totp.subkey(u.key)
            for u in users
            if any(d.name in u.doors for d in self._totp_doors)
        }
        self._static = [
            Pattern(Target(door.name, kind), ports, door.seq_timeout)
            for door in doors
            for kind, ports in door.sequences()
        ]
        self.matcher.max_sources = max_sources
        self.matcher.set_patterns(self._static)
        self._step: int | None = None

    def reconfigure(
        self,
        doors: Sequence[Door],
        users: Sequence[User],
        *,
        max_sources: int,
        spa_window: int,
        now: float,
    ) -> list[Action]:
        """Take new doors and users. Attempts on patterns that remain carry on; grants
        remain unless their door is gone, opens other ports, or their user lost it."""
        self._setup(doors, users, max_sources, spa_window)
        actions: list[Action] = []
        for grant in self.grants.all():
            door = self.doors.get(grant.door)
            user = self.users.get(grant.user)
            lost = grant.user and (user is None or grant.door not in user.doors)
            if door is None or door.open != grant.ports or lost:
                closed = self.grants.close(grant.door, grant.address, "door removed")
                if closed is not None:
                    actions.append(closed)
        actions.extend(self.tick(now))
        return actions

    # -- one-time sequences -------------------------------------------------------

    def roll(self, wall: float) -> frozenset[Port] | None:
        """Follow the clock: drop old replay keys and, when the 30-second step changes,
        recompute the one-time sequences. Returns every knock port the kernel must
        pass to sesame now, or None if that did not change."""
        self.replay.prune(wall)
        step = totp.step_of(wall)
        if step == self._step:
            return None
        self._step = step
        patterns = self._static + one_time_patterns(
            self._totp_doors, self.users.values(), self._totp_keys, step, self.replay
        )
        self.matcher.set_patterns(patterns)
        return frozenset(p for pattern in patterns for p in pattern.ports)

    def next_roll(self) -> float | None:
        """When the next time step starts (wall time), if any door needs it."""
        if not self._totp_doors or self._step is None:
            return None
        return float((self._step + 1) * totp.STEP)

    # -- knocks ---------------------------------------------------------------------

    def knock(self, knock: Knock, now: float) -> list[Action]:
        """Feed one knock packet; return what must happen now."""
        self.counters["knocks"] += 1
        evicted = self.matcher.evicted
        actions: list[Action] = []
        for target in self.matcher.feed(knock.source, knock.port, now):
            door = self.doors[target.door]
            if target.kind == "close":
                self.counters["unknocks"] += 1
                closed = self.grants.close(door.name, knock.source, "unknock")
                if closed is not None:
                    actions.append(closed)
                continue
            if target.user:  # a one-time sequence: spend it
                key = totp.spent_key(door.name, target.user, target.step)
                until = totp.spent_until(target.step)
                if not self.replay.add(key, until):
                    self.counters["replay window full"] += 1
                    continue
                actions.append(Spent(key, until))
                self.matcher.set_patterns(
                    p for p in self.matcher.patterns.values() if p.target != target
                )
            actions += self.open(door, knock.source, now, target.user)
        self.counters["evicted"] += self.matcher.evicted - evicted
        return actions

    # -- single-packet authorization ------------------------------------------------

    def spa(
        self, source: Address, port: Port, payload: bytes, now: float, wall: float
    ) -> list[Action]:
        """Judge one SPA datagram that ``source`` sent to ``port``."""
        name, header_len = spa.user_of(payload)
        aead = self._ciphers.get(name)
        if aead is None:
            raise RemoteError("unknown user")
        nonce = payload[header_len : header_len + spa.NONCE]
        if nonce in self.replay:  # a byte-identical replay costs no decryption
            raise RemoteError("replay")
        request = spa.open_sealed(payload, header_len, aead, name)
        if request.timestamp < wall - self.spa_window:
            raise RemoteError("stale timestamp")
        if request.timestamp > wall + self.spa_window:
            raise RemoteError("future timestamp")
        door = self.doors.get(request.door)
        if door is None or door.spa_port is None:
            raise RemoteError("unknown door")
        if door.spa_port != port.number:
            raise RemoteError("wrong spa port")
        user = self.users[name]
        if door.name not in user.doors:
            raise RemoteError("door not allowed")
        if request.address != source and not user.allow_other_address:
            raise RemoteError("address differs from source")
        until = request.timestamp + self.spa_window
        if not self.replay.add(nonce, until):
            raise RemoteError("replay window full")
        self.counters["spa accepted"] += 1
        return [Spent(nonce, until), *self.open(door, request.address, now, name)]

    # -- grants ---------------------------------------------------------------------

    def open(self, door: Door, address: Address, now: float, user: str = "") -> list[Action]:
        """Grant ``door`` to ``address`` for the door's ``open_for``; with
        ``one_address_per_user``, the user's grants at other addresses close."""
        actions: list[Action] = []
        if user and door.one_address_per_user:
            for old in self.grants.of_user(door.name, user):
                if old.address != address:
                    closed = self.grants.close(door.name, old.address, "replaced")
                    if closed is not None:
                        actions.append(closed)
        grant = Grant(door.name, address, door.open, now + door.open_for, user)
        decision = self.grants.grant(grant)
        self.counters["opened" if isinstance(decision, Opened) else "refreshed"] += 1
        actions.append(decision)
        return actions

    def revoke(self, door: str, address: Address) -> Closed | None:
        closed = self.grants.close(door, address, "revoked")
        if closed is not None:
            self.counters["revoked"] += 1
        return closed

    def restore(self, grants: Iterable[Grant]) -> None:
        """Adopt grants found in the kernel at start-up (no actions: they are live)."""
        for grant in grants:
            if grant.door in self.doors:
                self.grants.grant(grant)

    def tick(self, now: float) -> list[Action]:
        """Expire grants and stale attempts; return the grants that closed."""
        self.matcher.expire(now)
        closed = self.grants.expire(now)
        self.counters["expired"] += len(closed)
        return list(closed)

    def next_deadline(self) -> float | None:
        return self.grants.next_deadline()
