"""The exception hierarchy.

``SesameError`` is the one root. ``ConfigError`` is a local fault (the operator's
file) and names the file, the line and the reason. ``RemoteError`` is raised by
decoders of input that strangers control; the daemon's single entry point for
packets catches it, counts it under its ``reason`` and drops the packet, so remote
input can never unwind the daemon.
"""

from __future__ import annotations


class SesameError(Exception):
    """Root of every error sesame raises on purpose."""


class ConfigError(SesameError):
    """A configuration is refused: ``FILE:LINE: reason`` (``FILE: reason`` for the
    whole file)."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        """``line`` 0: the whole file (it cannot be read, say): ``FILE: reason``."""
        super().__init__(f"{path}:{line}: {reason}" if line > 0 else f"{path}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class RemoteError(SesameError):
    """Input from the network is malformed; ``reason`` (the one argument) is a short
    counter name. No __init__ of its own: raised per junk packet, it must be cheap."""

    @property
    def reason(self) -> str:
        return str(self.args[0])


class FirewallError(SesameError):
    """The kernel refused a firewall change (the message is nft's own)."""


class FieldError(ValueError):
    """A value object refuses a value: ``key`` names the config key it came from; for
    a rule between items, ``table`` and ``index`` name the item (the loader turns it
    into a :class:`ConfigError` at that key's line)."""

    def __init__(self, key: str, reason: str, table: str = "", index: int = 0) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason
        self.table = table
        self.index = index
