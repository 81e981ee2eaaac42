"""sesame run as an ordinary user (nobody) by the tests.

The checkout, and the virtual environment inside it, may sit under a directory only
root can enter (CI clones under one). Whatever nobody runs must not depend on that: once
per session, sesame and its runtime dependencies are copied to a directory everyone can
read, and nobody's sesame is that copy under an interpreter everyone can run."""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import stat
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import sesame

NOBODY = 65534


def as_nobody(home: str | Path = "/nonexistent", groups: tuple[str, ...] = ()) -> list[str]:
    """The prefix that runs a program as nobody, with HOME set and no other group."""
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}"]
    setpriv += [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    return [*setpriv, "env", f"HOME={home}"]


@functools.cache
def sesame_argv() -> tuple[str, ...]:
    """``python -m sesame`` that any user can run: ``env PYTHONPATH=COPY PYTHON -s -m sesame``."""
    where = Path(tempfile.mkdtemp(prefix="sesame-python-"))
    atexit.register(shutil.rmtree, where, True)
    shutil.copytree(Path(sesame.__file__).parent, where / "sesame")
    for name in _runtime("sesame"):
        for file in metadata.distribution(name).files or ():
            source = Path(str(file.locate()))
            if ".." not in file.parts and source.is_file():
                (where / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, where / file)
    for path in (where, *where.rglob("*")):
        path.chmod(path.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | _search(path))
    return ("env", f"PYTHONPATH={where}", _interpreter(), "-s", "-m", "sesame")


def _runtime(name: str, seen: set[str] | None = None) -> set[str]:
    """The distributions ``name`` needs at run time (not its extras), itself excluded."""
    seen = set() if seen is None else seen
    for requirement in metadata.requires(name) or ():
        wanted = re.match(r"[A-Za-z0-9._-]+", requirement)
        if wanted is None or "extra ==" in requirement or wanted.group() in seen:
            continue
        try:
            metadata.distribution(wanted.group())
        except metadata.PackageNotFoundError:
            continue  # a marker excluded it here
        seen.add(wanted.group())
        _runtime(wanted.group(), seen)
    return seen


def _search(path: Path) -> int:
    return stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0


def _interpreter() -> str:
    """This Python, or the system's of the same version, where every user can run it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        if _everyone_runs(Path(candidate)):
            return candidate
    raise RuntimeError(f"no Python {version} that every user may run (this one is root's)")


def _everyone_runs(path: Path) -> bool:
    if not path.is_file() or not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
