"""Interop tests run against Debian's knockd, knock, fwknop and fwknopd."""

from tests.helpers.lab import Lab, lab, require  # noqa: F401  (fixtures and helpers)
