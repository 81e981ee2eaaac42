"""CI's short run of the reliability suite (python -m bench.reliability --short): scans,
junk through the kernel, every bounded resource filled, faults, a short soak."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.lab import require


def test_the_short_reliability_suite_holds_everywhere():
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the suite needs root")
    for program in ("nmap", "nsenter"):
        require(program)
    root = Path(__file__).parent.parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "bench.reliability", "--short"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    assert "did not hold" not in result.stdout
    assert result.stdout.count("| held |") >= 14  # every part of the short run
