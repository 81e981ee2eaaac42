"""README's main job: ``sesame lab`` runs to its end and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_sesame_lab_runs_to_its_end_and_cleans_up():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    result = subprocess.run(
        [sys.executable, "-m", "sesame", "lab", "--open-for", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[FAILED]" not in result.stdout
    assert result.stdout.count("[ok]") == 11
    assert "Every step behaved as it should." in result.stdout
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert f"sesame-lab{result.args and ''}" not in namespaces or "lab" not in namespaces
