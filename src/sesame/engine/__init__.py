"""The pure engine: knock matching, SPA verification and grant decisions. No I/O;
``now`` and ``wall`` are passed in."""

from sesame.basics import Address
from sesame.engine.core import Engine
from sesame.engine.events import (
    Action,
    Closed,
    CloseReason,
    Decision,
    Grant,
    Knock,
    Opened,
    Refreshed,
    Spent,
)
from sesame.engine.grants import GrantBook
from sesame.engine.replay import ReplayWindow
from sesame.engine.sequences import Pattern, SequenceMatcher, Target, step

__all__ = [
    "Action",
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
    "ReplayWindow",
    "SequenceMatcher",
    "Spent",
    "Target",
    "step",
]
