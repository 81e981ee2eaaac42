"""knockd's one-time sequence files: each door's sequences, each used once, marked
in the file as knockd marks them."""

from __future__ import annotations

import logging

from sesame.basics import Port
from sesame.compat.knockd import OneTimeFile
from sesame.config import Config
from sesame.engine import Engine
from sesame.engine.events import SequenceUsed

log = logging.getLogger("sesame")


class OneTimeFiles:
    """The open files of a config's doors, and the engine they feed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.files: dict[str, OneTimeFile] = {}

    def load(self, config: Config) -> None:
        """Open the doors' files and give the engine their current and next sequence."""
        self.files = {name: OneTimeFile(path) for name, path in config.one_time_files.items()}
        for name, sequences in self.files.items():
            self.engine.set_sequence(name, *sequences.next_two())

    def used(self, used: SequenceUsed) -> None:
        """Mark a used sequence in its file and load the next (none: the door closes)."""
        sequences = self.files.get(used.door)
        if sequences is None:
            return
        upcoming: tuple[Port, ...] = ()
        try:
            sequences.spend(used.ports)
            following, upcoming = sequences.next_two()
        except OSError as exc:
            log.error("one-time sequences of door %s: %s; the door closes", used.door, exc)
            following = None
        self.engine.set_sequence(used.door, following, upcoming)
        if following is None:
            log.info("no one-time sequences left for door %s: it is closed", used.door)


def ports_of(config: Config) -> frozenset[Port]:
    """The ports of the current and next sequence in each door's file."""
    ports: set[Port] = set()
    for file in config.one_time_files.values():
        current, upcoming = OneTimeFile(file).next_two()
        ports |= set((current or ()) + upcoming)
    return frozenset(ports)
