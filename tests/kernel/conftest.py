"""Kernel tests: a fresh server/user/stranger topology per test, always deleted."""

from __future__ import annotations

import pytest

from tests.helpers.lab import lab  # noqa: F401  (the fixture)

pytestmark = pytest.mark.kernel


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/kernel" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
