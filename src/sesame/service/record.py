"""The replay record: spent keys (SPA nonces, fwknop digests, one-time sequences)
written to ``state_dir`` before what they open is opened, so that a restart cannot
accept them again. A key that cannot be written opens nothing (fail closed)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from sesame.config import Config
from sesame.engine import Engine
from sesame.engine.events import Spent
from sesame.service.report import Warnings
from sesame.state import ReplayStore

log = logging.getLogger("sesame")
COMPACT_RETRY = 60.0  # seconds before a failed compaction of the state file is retried


def store_for(config: Config) -> ReplayStore:
    return ReplayStore(config.server.state_dir, config.replay_horizon)


class Record:
    """Keeps an engine's replay window on disk (``store`` None: no door needs it)."""

    def __init__(self, store: ReplayStore | None, warn: Warnings, reports: Counter[str]) -> None:
        self.store = store
        self.warn = warn
        self.reports = reports
        self.compact_after = 0.0

    def restore(self, engine: Engine, store: ReplayStore, wall: float) -> None:
        """Read the record back; if keys were lost, refuse what was stamped before
        now: those are the messages that could otherwise be replayed."""
        engine.replay.restore(store.load(wall), wall)
        if store.damaged:
            engine.not_before = wall
            log.warning(
                "%s was damaged (%s): SPA datagrams and one-time sequences from before now"
                " are refused; fresh ones open",
                store.path,
                store.unreadable or f"{store.rejected} records that cannot be right",
            )

    def start(self, engine: Engine, wall: float, now: float) -> None:
        if self.store is not None:
            self.restore(engine, self.store, wall)
            if self.store.error is not None:
                self.unrecorded(now)

    def adopt(self, engine: Engine, store: ReplayStore, wall: float) -> None:
        """A reload brought the first door that needs a record."""
        self.store = store
        self.restore(engine, store, wall)

    def recorded(self, spent: Sequence[Spent], now: float) -> bool:
        """Put spent keys on record (before their grants), in one write; False if the
        state directory cannot take them, and then they open nothing, nor does any
        other until it can (fail closed)."""
        if self.store is None or not spent:
            return True
        failing = self.store.error is not None
        if self.store.append_all([(s.key, s.until) for s in spent]):
            if failing:
                log.warning(
                    "%s is writable again: SPA and one-time sequences open", self.store.path
                )
            return True
        self.reports["not recorded"] += len(spent)
        self.unrecorded(now)
        return False

    def unrecorded(self, now: float) -> None:
        assert self.store is not None
        self.warn(
            "state",
            now,
            "cannot write %s (%s): accepted SPA datagrams and one-time sequences open"
            " nothing until it can be written",
            self.store.path,
            self.store.error,
        )

    def compact(self, engine: Engine, now: float) -> None:
        """Rewrite the record once it has grown; if the disk refuses, go on appending
        to the old one and try again a minute later."""
        store = self.store
        if store is None or now < self.compact_after:
            return
        if store.should_compact(len(engine.replay)) and not store.compact(engine.replay.items()):
            self.compact_after = now + COMPACT_RETRY
            self.warn("compact", now, "cannot compact %s: %s", store.path, store.error)

    def close(self) -> None:
        if self.store is not None:
            self.store.shut()
