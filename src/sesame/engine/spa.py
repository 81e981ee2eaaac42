"""sesame's own single-packet authorization: a sealed datagram names its user, who
asks for a door to be opened for an address (see :mod:`sesame.wire.spa`).

Checks run cheapest first, and nothing is decrypted for an unknown user, a nonce
already seen, or a source that keeps failing for the user it names (see
:class:`sesame.engine.limits.Failures`). An authentic message is then held to its user's share (see
:mod:`sesame.engine.limits`) before it may take a place in the replay window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sesame.basics import Address, Port
from sesame.doors import Door, User
from sesame.engine.events import Action, Spent
from sesame.engine.limits import Failures, Shares
from sesame.engine.policy import admission
from sesame.engine.replay import ReplayWindow
from sesame.errors import RemoteError
from sesame.wire import spa as wire


class SpaJudge:
    """Judges sesame SPA datagrams against doors and users."""

    def __init__(self, replay: ReplayWindow, shares: Shares, counters: Counter[str]) -> None:
        self.replay = replay
        self.shares = shares
        self.counters = counters
        self.doors: dict[str, Door] = {}
        self.users: dict[str, User] = {}
        self.ports: frozenset[int] = frozenset()
        self.window = 60
        self.ciphers: dict[str, ChaCha20Poly1305] = {}
        self.failures = Failures()

    def configure(self, doors: Sequence[Door], users: Sequence[User], window: int) -> None:
        self.doors = {door.name: door for door in doors}
        self.users = {user.name: user for user in users}
        self.ports = frozenset(d.spa_port for d in doors if d.spa_port is not None)
        self.window = window
        self.ciphers = {u.name: wire.cipher(u.key) for u in users}

    def judge(
        self,
        source: Address,
        port: Port,
        payload: bytes,
        now: float,
        wall: float,
        not_before: float,
    ) -> list[Action]:
        """Judge one datagram that ``source`` sent to ``port``; RemoteError if refused."""
        name, header_len = wire.user_of(payload)
        aead = self.ciphers.get(name)
        if aead is None:
            raise RemoteError("unknown user")
        nonce = payload[header_len : header_len + wire.NONCE]
        if nonce in self.replay:  # a byte-identical replay costs no decryption
            raise RemoteError("replay")
        if self.failures.over(name, source, now):
            raise RemoteError("too many failures from this source")
        try:
            request = wire.open_sealed(payload, header_len, aead, name)
        except RemoteError:
            self.failures.failed(name, source, now)
            raise
        self.failures.passed(name, source, now)
        if request.timestamp < not_before:
            raise RemoteError("stamped before the replay record was lost")
        if request.timestamp < wall - self.window:
            raise RemoteError("stale timestamp")
        if request.timestamp > wall + self.window:
            raise RemoteError("future timestamp")
        door = self.doors.get(request.door)
        if door is None or door.spa_port is None:
            raise RemoteError("unknown door")
        if door.spa_port != port.number:
            raise RemoteError("wrong spa port")
        user = self.users[name]
        if door.name not in user.doors:
            raise RemoteError("door not allowed")
        self.shares.take(name, now)  # first: what follows logs a line
        if request.address != source and not user.allow_other_address:
            raise self.shares.elsewhere(name, source, request.address)
        until = request.timestamp + self.window
        if not self.replay.add(nonce, until):
            raise RemoteError("replay window full")
        self.counters["spa accepted"] += 1
        return [Spent(nonce, until, admission(door, request.address, name))]
