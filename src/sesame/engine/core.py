"""The engine: knocks and SPA datagrams in, actions out. No sockets, no clock, no
subprocess: ``now`` (monotonic, for deadlines) and ``wall`` (Unix time, for
timestamps and time steps) are passed in."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from ipaddress import IPv4Address, ip_address

from sesame.basics import Address, Port
from sesame.doors import NAME_RE, Door, FwknopStanza, User
from sesame.engine import totp
from sesame.engine.events import (
    Action,
    Admission,
    Closed,
    Decision,
    Element,
    Grant,
    Knock,
    Opened,
    SequenceUsed,
    Spent,
)
from sesame.engine.grants import GrantBook
from sesame.engine.limits import Buckets
from sesame.engine.replay import ReplayWindow
from sesame.engine.sequences import Pattern, SequenceMatcher, Target
from sesame.errors import RemoteError
from sesame.wire import fwknop as fwknop_wire
from sesame.wire import spa

ANY_V4 = IPv4Address("0.0.0.0")


def fwknop_ports(text: str) -> list[Port]:
    """``tcp/22,udp/53`` as ports; ValueError for anything else (icmp, none, junk)."""
    out = []
    for item in text.split(","):
        proto, _, number = item.strip().partition("/")
        if proto.lower() not in ("tcp", "udp") or not number.isdigit():
            raise ValueError(item)
        out.append(Port("tcp" if proto.lower() == "tcp" else "udp", int(number)))
    return out


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
        fwknop: Sequence[FwknopStanza] = (),
        max_sources: int = 40_000,
        spa_window: int = 60,
        replay_cap: int = 1_000_000,
        spa_rate: float = 1.0,
        spa_burst: int = 30,
    ) -> None:
        self.grants = GrantBook()
        self.replay = ReplayWindow(replay_cap)
        self.counters: Counter[str] = Counter()
        self.matcher = SequenceMatcher((), max_sources)
        self.shares = Buckets(spa_rate, spa_burst)
        # Authentic messages refused for asking for another address than their source
        # (a client behind NAT, mostly): (user, source, asked), for the daemon to log.
        self.other_address: list[tuple[str, Address, Address]] = []
        self.over_rate: set[str] = set()  # key holders refused for their rate, since asked
        # Messages stamped before this (wall time) are refused: set when the replay
        # record read back at start-up had lost keys, which could then be replayed.
        self.not_before = 0.0
        self._setup(doors, users, fwknop, max_sources, spa_window)

    def _setup(
        self,
        doors: Sequence[Door],
        users: Sequence[User],
        fwknop: Sequence[FwknopStanza],
        max_sources: int,
        spa_window: int,
    ) -> None:
        self.fwknop_stanzas = tuple(fwknop)
        self.fwknop_ports = frozenset(s.spa_port for s in fwknop)
        self._fwknop_by_port: dict[int, list[tuple[FwknopStanza, fwknop_wire.Verifier]]] = {}
        for stanza in fwknop:
            verifier = fwknop_wire.Verifier(stanza.hmac_key, stanza.hmac_type)
            self._fwknop_by_port.setdefault(stanza.spa_port, []).append((stanza, verifier))
        self.fwknop_destinations = any(s.destinations for s in fwknop)
        self.targets = any(d.target is not None for d in doors)  # knocks need destinations
        # The doors and stanzas whose grants the kernel holds (gate = false: commands only).
        self.gated = frozenset({d.name for d in doors if d.gate} | {s.name for s in fwknop})
        self._names = {d.name for d in doors} | {s.name for s in fwknop}
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
        self._one_time: dict[str, tuple[Port, ...]] = {
            name: ports
            for name, ports in getattr(self, "_one_time", {}).items()
            if name in self.doors and self.doors[name].one_time_sequences
        }
        self._upcoming: dict[str, tuple[Port, ...]] = {}
        self._static = self._fixed_patterns()
        self.matcher.max_sources = max_sources
        self.matcher.set_patterns(self._static)
        self._step: int | None = None

    def _fixed_patterns(self) -> list[Pattern]:
        patterns = []
        for door in self.doors.values():
            sequences = list(door.sequences())
            if door.one_time_sequences:
                current = self._one_time.get(door.name)
                sequences = [("open", current)] if current else []
            for kind, ports in sequences:
                patterns.append(
                    Pattern(
                        Target(door.name, kind),
                        ports,
                        door.seq_timeout,
                        door.tcp_flags,
                        door.target,
                    )
                )
        return patterns

    def set_sequence(
        self, door: str, ports: tuple[Port, ...] | None, upcoming: tuple[Port, ...] = ()
    ) -> None:
        """The current sequence of a door with a one-time sequence file (None: used up,
        the door is closed for good); ``upcoming`` is the next one, whose ports the
        kernel passes already."""
        self._upcoming[door] = upcoming
        if ports:
            self._one_time[door] = ports
        else:
            self._one_time.pop(door, None)
        self._static = self._fixed_patterns()
        rolling = [p for p in self.matcher.patterns.values() if p.target.user]
        self.matcher.set_patterns(self._static + rolling)

    def knock_ports(self) -> frozenset[Port]:
        """Every port some sequence uses now (fixed, one-time file, rolling)."""
        now = {p for pattern in self.matcher.patterns.values() for p in pattern.ports}
        return frozenset(now | {p for ports in self._upcoming.values() for p in ports})

    def first_ports(self) -> frozenset[Port] | None:
        """The ports that start a sequence now (None: a sequence has a single port)."""
        return self.matcher.first_ports()

    def tracks(self, source: Address) -> bool:
        """Does ``source`` hold a knock attempt?"""
        return self.matcher.tracks(source)

    def tracked(self) -> list[Address]:
        """Every source that holds a knock attempt."""
        return [ip_address(packed) for packed in self.matcher.tracked()]

    def reconfigure(
        self,
        doors: Sequence[Door],
        users: Sequence[User],
        *,
        fwknop: Sequence[FwknopStanza] = (),
        max_sources: int,
        spa_window: int,
        now: float,
        spa_rate: float = 1.0,
        spa_burst: int = 30,
    ) -> list[Action]:
        """Take new doors, users and stanzas. Attempts on patterns that remain carry on;
        grants remain unless what opened them is gone, opens other ports, or their user
        lost the door."""
        self._setup(doors, users, fwknop, max_sources, spa_window)
        self.shares.keep(set(self.users) | {s.name for s in fwknop}, spa_rate, spa_burst)
        stanzas = {s.name: s for s in self.fwknop_stanzas}
        actions: list[Action] = []
        for grant in self.grants.all():
            door = self.doors.get(grant.door)
            stanza = stanzas.get(grant.door)
            user = self.users.get(grant.user)
            if stanza is not None:
                gone = not set(grant.ports) <= set(stanza.open_ports)
            else:
                lost = bool(grant.user) and (user is None or grant.door not in user.doors)
                gone = door is None or door.open != grant.ports or lost
            if gone:
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
            self._totp_doors,
            self.users.values(),
            self._totp_keys,
            step,
            self.replay,
            totp.step_of(self.not_before) + 2 if self.not_before else 0,
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
        completed = self.matcher.feed(knock.source, knock.port, now, knock.flags, knock.destination)
        for target in completed:
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
                actions.append(Spent(key, until, self._admission(door, knock.source, target.user)))
                self.matcher.set_patterns(
                    p for p in self.matcher.patterns.values() if p.target != target
                )
                continue
            if door.one_time_sequences:
                current = self._one_time.get(door.name)
                if current is not None:
                    actions.append(SequenceUsed(door.name, current))
                    self.set_sequence(door.name, None)  # until the caller loads the next
            actions += self.open(door, knock.source, now, target.user)
        self.counters["evicted"] += self.matcher.evicted - evicted
        return actions

    def noise(self, source: Address) -> None:
        """``source`` touched a port that is neither a knock, a guarded nor a public
        port while it had an attempt in progress: a scan. Its attempts end."""
        self.counters["noise"] += 1
        if self.matcher.forget(source):
            self.counters["attempts ended by noise"] += 1

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
        if request.timestamp < self.not_before:
            raise RemoteError("stamped before the replay record was lost")
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
        self._within_share(name, now)  # first: what follows logs a line
        if request.address != source and not user.allow_other_address:
            self.other_address.append((name, source, request.address))
            raise RemoteError("address differs from source")
        until = request.timestamp + self.spa_window
        if not self.replay.add(nonce, until):
            raise RemoteError("replay window full")
        self.counters["spa accepted"] += 1
        return [Spent(nonce, until, self._admission(door, request.address, name))]

    def _within_share(self, name: str, now: float) -> None:
        """Refuse an authentic message of a key holder over its rate (see limits)."""
        if not self.shares.take(name, now):
            self.over_rate.add(name)
            raise RemoteError("over the user's rate")

    # -- fwknop SPA --------------------------------------------------------------------

    def fwknop(
        self,
        source: Address,
        destination: Address | None,
        port: Port,
        payload: bytes,
        now: float,
        wall: float,
    ) -> list[Action]:
        """Judge one datagram in fwknop's format, against the access stanzas
        (``destination`` is needed only where a stanza has DESTINATION)."""
        reason = "fwknop no stanza for source"
        for stanza, verifier in self._fwknop_by_port.get(port.number, ()):
            restricted = stanza.sources or stanza.destinations
            if restricted and not stanza.admits(source, destination):
                continue
            if stanza.access_expire is not None and wall > stanza.access_expire:
                reason = "fwknop access expired"
                continue
            wrong = verifier.fault(payload)
            if wrong is not None:
                reason = wrong
                continue
            try:
                message = verifier.open(payload, stanza.key, self._replayed)
            except RemoteError as exc:
                reason = exc.reason
                continue
            digest = hashlib.sha256(payload).digest()
            return self._fwknop_grant(stanza, message, digest, source, now, wall)
        raise RemoteError(reason)

    def _replayed(self, payload: bytes) -> bool:
        """fwknopd's replay check, the digest of the datagram, remembered for the age
        window: run once the HMAC is verified, before anything is decrypted."""
        return hashlib.sha256(payload).digest() in self.replay

    def _fwknop_grant(
        self,
        stanza: FwknopStanza,
        message: fwknop_wire.Message,
        digest: bytes,
        source: Address,
        now: float,
        wall: float,
    ) -> list[Action]:
        if abs(wall - message.timestamp) > stanza.max_age:
            raise RemoteError("stale timestamp")
        if message.timestamp < self.not_before:
            raise RemoteError("stamped before the replay record was lost")
        if message.kind not in (fwknop_wire.ACCESS, fwknop_wire.ACCESS_WITH_TIMEOUT):
            raise RemoteError("fwknop message type")
        if stanza.require_username is not None and message.user != stanza.require_username:
            raise RemoteError("fwknop username")
        text, _, requested = message.access.partition(",")
        try:
            if "%" in text:  # a scope id (any bytes after "%"): no address to open for
                raise ValueError(text)
            asked = ip_address(text)
            ports = tuple(sorted(fwknop_ports(requested)))
        except ValueError:
            raise RemoteError("fwknop access request") from None
        self._within_share(stanza.name, now)  # first: what follows logs a line
        if asked == ANY_V4:
            if not stanza.allow_source_any:
                raise RemoteError("fwknop source address required")
            asked = source
        elif asked != source and not stanza.allow_other_address:
            self.other_address.append((stanza.name, source, asked))
            raise RemoteError("address differs from source")
        if not ports or any(
            p not in stanza.open_ports or p in stanza.restrict_ports for p in ports
        ):
            raise RemoteError("fwknop port not allowed")
        seconds = stanza.fw_access_timeout
        if message.client_timeout:
            seconds = min(message.client_timeout, stanza.max_fw_timeout)
        until = message.timestamp + stanza.max_age
        if not self.replay.add(digest, until):
            raise RemoteError("replay window full")
        self.counters["fwknop accepted"] += 1
        user = message.user if NAME_RE.match(message.user) else ""
        return [Spent(digest, until, Admission(stanza.name, asked, ports, seconds, user))]

    # -- grants ---------------------------------------------------------------------

    @staticmethod
    def _admission(door: Door, address: Address, user: str) -> Admission:
        return Admission(
            door.name, address, door.open, door.open_for, user, door.one_address_per_user
        )

    def open(self, door: Door, address: Address, now: float, user: str = "") -> list[Decision]:
        """Grant ``door`` to ``address`` for the door's ``open_for``; with
        ``one_address_per_user``, the user's grants at other addresses close."""
        return self.admit(self._admission(door, address, user), now)

    def admit(self, admission: Admission, now: float) -> list[Decision]:
        """Open what an accepted one-shot message unlocks, once its key is on record."""
        return self.give(
            admission.door,
            admission.address,
            admission.ports,
            admission.seconds,
            now,
            admission.user,
            one_address=admission.one_address,
        )

    def give(
        self,
        name: str,
        address: Address,
        ports: tuple[Port, ...],
        seconds: int,
        now: float,
        user: str = "",
        *,
        one_address: bool = False,
    ) -> list[Decision]:
        """Grant ``ports`` to ``address`` under ``name`` for ``seconds``. A live grant
        of the same name and address is refreshed; if it held other ports, it is
        closed and the new one opened."""
        actions: list[Decision] = []
        if user and one_address:
            for old in self.grants.of_user(name, user):
                if old.address != address:
                    closed = self.grants.close(name, old.address, "replaced")
                    if closed is not None:
                        actions.append(closed)
        live = self.grants.get(name, address)
        if live is not None and live.ports != ports:
            closed = self.grants.close(name, address, "replaced")
            if closed is not None:
                actions.append(closed)
        decision = self.grants.grant(Grant(name, address, ports, now + seconds, user))
        self.counters["opened" if isinstance(decision, Opened) else "refreshed"] += 1
        actions.append(decision)
        return actions

    def elements(self, decisions: Iterable[Decision]) -> list[Element]:
        """What the kernel must hold after ``decisions`` (see GrantBook.elements)."""
        return self.grants.elements(decisions, self.gated)

    def element(self, address: Address, port: Port) -> Element:
        return self.grants.element(address, port, self.gated)

    def revoke(self, door: str, address: Address) -> Closed | None:
        closed = self.grants.close(door, address, "revoked")
        if closed is not None:
            self.counters["revoked"] += 1
        return closed

    def restore(self, grants: Iterable[Grant]) -> None:
        """Adopt grants found in the kernel at start-up (no actions: they are live)."""
        for grant in grants:
            if grant.door in self._names:
                self.grants.grant(grant)

    def tick(self, now: float) -> list[Action]:
        """Expire grants and stale attempts; return the grants that closed."""
        self.matcher.expire(now)
        closed = self.grants.expire(now)
        self.counters["expired"] += len(closed)
        return list(closed)

    def next_deadline(self) -> float | None:
        return self.grants.next_deadline()
