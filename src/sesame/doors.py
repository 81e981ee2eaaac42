"""Doors: what a knock opens. Frozen values, validated when built."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sesame.ports import Port

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
MAX_SEQUENCE = 32
PLACEHOLDERS = ("{ip}", "{port}", "{proto}", "{door}")


@dataclass(frozen=True, slots=True)
class Door:
    """One door: a knock sequence that opens ports to the knocker for a while."""

    name: str
    sequence: tuple[Port, ...]
    open: tuple[Port, ...]
    seq_timeout: float = 25.0
    open_for: int = 30
    close_sequence: tuple[Port, ...] = ()
    start_command: tuple[str, ...] = ()
    stop_command: tuple[str, ...] = ()
    gate: bool = True

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(
                f"door name {self.name!r} must be 1-32 letters, digits, '_', '.' or '-'"
            )
        for label, seq in (("sequence", self.sequence), ("close_sequence", self.close_sequence)):
            if len(seq) > MAX_SEQUENCE:
                raise ValueError(f"{label} has {len(seq)} ports; at most {MAX_SEQUENCE}")
        if not self.sequence:
            raise ValueError("sequence is empty")
        if not self.open:
            raise ValueError("open is empty: the door would open nothing")
        if not 0 < self.seq_timeout <= 3600:
            raise ValueError("seq_timeout must be more than 0 and at most 3600 seconds")
        if not 1 <= self.open_for <= 86400:
            raise ValueError("open_for must be 1 to 86400 seconds")
        if not self.gate and not self.start_command:
            raise ValueError("gate = false and no start_command: the door would open nothing")
        for label, argv in (
            ("start_command", self.start_command),
            ("stop_command", self.stop_command),
        ):
            for arg in argv:
                for brace in re.findall(r"\{[^{}]*\}", arg):
                    if brace not in PLACEHOLDERS:
                        raise ValueError(
                            f"{label}: unknown placeholder {brace}; use {', '.join(PLACEHOLDERS)}"
                        )

    def sequences(self) -> tuple[tuple[str, tuple[Port, ...]], ...]:
        """The door's knock sequences, each labelled ``open`` or ``close``."""
        out: list[tuple[str, tuple[Port, ...]]] = [("open", self.sequence)]
        if self.close_sequence:
            out.append(("close", self.close_sequence))
        return tuple(out)
