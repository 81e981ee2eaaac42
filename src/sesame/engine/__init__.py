"""The pure engine: knock matching and grant decisions. No I/O; ``now`` is passed in."""

from sesame.engine.core import Engine
from sesame.engine.events import (
    Address,
    Closed,
    CloseReason,
    Decision,
    Grant,
    Knock,
    Opened,
    Refreshed,
)
from sesame.engine.grants import GrantBook
from sesame.engine.sequences import Pattern, SequenceMatcher, step

__all__ = [
    "Address",
    "CloseReason",
    "Closed",
    "Decision",
    "Engine",
    "Grant",
    "GrantBook",
    "Knock",
    "Opened",
    "Pattern",
    "Refreshed",
    "SequenceMatcher",
    "step",
]
