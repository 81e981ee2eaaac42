"""TOML parsing: tomli's compiled wheel where pip installed it (a config of 10,000 users
reads in a third of the time), else the standard library's tomllib, which is the same
parser (TOML 1.0.0, the same messages) in pure Python, as in the Debian package."""

from __future__ import annotations

try:
    from tomli import TOMLDecodeError, loads
except ImportError:  # pragma: no cover - the Debian package's Python: tomllib alone
    from tomllib import TOMLDecodeError, loads  # type: ignore[assignment]

__all__ = ["TOMLDecodeError", "loads"]
