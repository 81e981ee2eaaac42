"""The daemon's part of a cluster: it hands claims to the store, opens what the store
says was claimed, applies other nodes' entries, and tells them its own. The rules
are :mod:`sesame.engine.cluster`'s; the store's I/O is :mod:`sesame.cluster.store`,
on threads of its own, so a slow or absent store never holds up a packet.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sesame.cluster.entries import BATCH, Entry, Signer
from sesame.cluster.settings import Cluster
from sesame.cluster.store import BEAT, Changed, Claimed, Forgotten, Heard, RedisStore, Store
from sesame.engine import Engine
from sesame.engine.cluster import Closing, Down, Mode, Outcome, Scopes, Up, after, opens
from sesame.engine.events import Admission, Decision, Spent
from sesame.errors import RemoteError
from sesame.service.control import grant_row
from sesame.service.report import Warnings
from sesame.settings import Config

log = logging.getLogger("sesame")
SHOWN = 1000  # grants a heartbeat lists, at most (it is renewed every BEAT seconds)
REFUSED = {
    "taken": "cluster replays",
    "failed": "cluster refused: store down",
    "forgotten": "cluster refused: store forgot",
}


def of(
    config: Config, engine: Engine, warn: Warnings, store: Store | None = None
) -> ClusterService | None:
    """The node a config's ``[cluster]`` makes (None without one)."""
    if config.cluster is None:
        return None
    return ClusterService(config.cluster, config, engine, warn, store)


class ClusterService:
    """One node of a cluster."""

    def __init__(
        self,
        cluster: Cluster,
        config: Config,
        engine: Engine,
        warn: Warnings,
        store: Store | None = None,
    ) -> None:
        self.settings, self.engine, self.warn = cluster, engine, warn
        self.signer = Signer(cluster.key, cluster.name)
        self.scopes = Scopes(cluster.node, cluster.on_store_down)
        self.configure(config)
        self.store = store if store is not None else RedisStore(cluster)
        self.mode: Mode = Up()  # until the store is found down
        self.counts: Counter[str] = Counter()
        self.pending: dict[int, tuple[Admission, bool]] = {}  # token -> admit, told with it
        self.seen: dict[str, float] = {}  # entry ids applied or told -> their deadline
        self._tokens = itertools.count()
        self.next_beat = 0.0

    def configure(self, config: Config) -> None:
        self.scopes.configure(config.doors, config.users, config.fwknop)

    def start(self) -> None:
        self.store.start()
        log.info(
            "cluster %s: node %s, store %s",
            self.settings.name,
            self.scopes.node,
            self.settings.where,
        )

    def fileno(self) -> int:
        return self.store.fileno()

    # -- claims ----------------------------------------------------------------------

    def claim(self, spent: Spent, now: float, wall: float, alone: bool = False) -> Admission | None:
        """Claim a spent key in the store; what it unlocks opens when the claim is
        made (:meth:`events`). Returned now only if the store is down and the door
        opens without it. ``alone``: the only claim of its batch; at a cluster door,
        its entry goes with the claim, so the other nodes open it one round trip
        sooner (a batch's entries are told together once its claims are made: one
        message for many)."""
        admit = spent.admit
        if admit is None:
            return None
        if self.down:
            return self._settle("failed", admit)
        token = next(self._tokens)
        told = None
        if alone and self.scopes.shared(admit.door):
            entry = self.scopes.opening(admit, wall)
            told = (*self.signer.seal([entry]), entry.until)
            self.seen[entry.id] = entry.until
        self.pending[token] = (admit, told is not None)
        ttl = int((spent.until - wall) * 1000)
        self.store.claim(token, self.signer.claim(spent.key), ttl, told)
        self.counts["cluster claims"] += 1
        return None

    def _settle(self, outcome: Outcome, admit: Admission) -> Admission | None:
        on_store_down = self.scopes.on_store_down(admit.door)
        if opens(outcome, on_store_down):
            if outcome == "failed":
                self.counts["cluster opened alone: store down"] += 1
            return admit
        self.counts[REFUSED[outcome]] += 1
        if outcome == "taken":
            log.warning(
                "refused a replay at door %s for %s: another node accepted it first",
                admit.door,
                admit.address,
            )
        return None

    # -- what the store said -----------------------------------------------------------

    def events(self, now: float, wall: float) -> tuple[list[Decision], list[Decision]]:
        """Carry out what the store said: (decisions to tell the other nodes, those
        that came from them or were told with their claims)."""
        mine: list[Decision] = []
        told: list[Decision] = []
        heard: list[Heard] = []
        for event in self.store.take():
            if isinstance(event, Claimed):
                admit, sent = self.pending.pop(event.token, (None, False))
                if event.outcome == "failed":
                    self.mode = after(self.mode, "failed", now, "a claim failed")
                opened = None if admit is None else self._settle(event.outcome, admit)
                if opened is not None and opened.door in self.engine.policy.names:
                    decided = self.engine.admit(opened, now)  # (a reload may have removed it)
                    if sent and event.outcome == "claimed":  # its entry went with it
                        told += decided
                        self.counts["cluster entries told"] += 1
                    else:
                        mine += decided
            elif isinstance(event, Heard):
                heard.append(event)
            elif isinstance(event, Changed):
                self._changed(event, now)
            elif isinstance(event, Forgotten):
                self.engine.not_before = max(self.engine.not_before, wall)
                log.warning(
                    "cluster store %s lost what it held (restarted without persistence,"
                    " or flushed): SPA datagrams and one-time sequences from before now"
                    " are refused; fresh ones open",
                    self.settings.where,
                )
        entries = [(entry, h.live) for h in heard for entry in self._open(h, now)]
        live = sorted((e for e, was_live in entries if was_live), key=lambda e: e.at)
        for entry in live:
            told += self._apply(entry, True, now, wall)
        for entry in (e for e, was_live in entries if not was_live):
            told += self._apply(entry, False, now, wall)
        return mine, told

    def _changed(self, event: Changed, now: float) -> None:
        self.mode = after(self.mode, "back" if event.up else "failed", now, event.why)
        if event.up:
            log.info("cluster store %s answers", self.settings.where)
        else:
            self.counts["cluster store failures"] += 1
            log.warning(
                "cluster store %s does not answer (%s): SPA and one-time sequences are"
                ' refused, except at doors with on_store_down = "local"; plain knocks open',
                self.settings.where,
                event.why,
            )

    def _open(self, event: Heard, now: float) -> list[Entry]:
        try:
            return self.signer.open(event.body, event.mac)
        except RemoteError as exc:
            self.counts[f"cluster entries refused: {exc.reason}"] += 1
            self.warn(
                "cluster forged",
                now,
                "cluster store %s holds an entry that is not a node's (%s): ignored;"
                " whoever wrote it can write to the store without the cluster key",
                self.settings.where,
                exc.reason,
            )
            return []

    def _apply(self, entry: Entry, live: bool, now: float, wall: float) -> list[Decision]:
        """Apply an entry (``live``: read from the list of live grants, on connecting,
        where this node's own entries count too: it may have restarted)."""
        if entry.id in self.seen or (entry.node == self.scopes.node and not live):
            return []
        self.seen[entry.id] = entry.until
        try:
            judged = self.scopes.judge(entry, wall)
        except RemoteError as exc:
            self.counts[f"cluster entries refused: {exc.reason}"] += 1
            return []
        self.counts["cluster entries applied"] += 1
        if isinstance(judged, Closing):
            return list(self.engine.policy.close(judged.door, judged.address, judged.reason))
        return self.engine.admit(judged, now)

    # -- telling ---------------------------------------------------------------------

    def share(self, decisions: Sequence[Decision], now: float, wall: float) -> None:
        """Tell the other nodes what opened or closed here at cluster doors: the
        entries of one batch of decisions in one message."""
        entries = self.scopes.entries(decisions, now, wall)
        for first in range(0, len(entries), BATCH):
            told = entries[first : first + BATCH]
            body, mac = self.signer.seal(told)
            self.store.tell(body, mac, max(entry.until for entry in told))
            for entry in told:
                self.seen[entry.id] = entry.until
            self.counts["cluster entries told"] += len(told)

    def tick(self, now: float, wall: float) -> None:
        """Forget entries past their deadline; renew what the heartbeat says."""
        for ident in [i for i, until in self.seen.items() if until < wall]:
            del self.seen[ident]
        if now >= self.next_beat:
            self.next_beat = now + BEAT
            self.store.snapshot = json.dumps(self.status(now, wall)).encode()

    @property
    def down(self) -> bool:
        return isinstance(self.mode, Down)

    def status(self, now: float, wall: float) -> dict[str, Any]:
        """This node: the store's state, and the grants of cluster doors it holds (the
        first SHOWN of them, and how many)."""
        shared = [g for g in self.engine.grants.all() if self.scopes.shared(g.door)]
        grants = [
            grant_row(g.address, port, g.door, g.user, round(max(0.0, g.expires - now), 3))
            for g in shared[:SHOWN]
            for port in g.ports
        ]
        down = self.mode if isinstance(self.mode, Down) else None
        return {
            "node": self.scopes.node,
            "at": round(wall, 3),
            "store": "up" if down is None else f"down for {now - down.since:.0f} s: {down.why}",
            "grants": grants,
            "grants_held": len(shared),
        }

    def close(self) -> None:
        self.store.close()
