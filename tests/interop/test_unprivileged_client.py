"""Every client command runs as an ordinary user, without root or capabilities:
keygen, knock (a plain sequence, SPA, fwknop's), sequence, connect (in test_ssh.py).
A source port under 1024 is the one thing that needs more, and the client says so."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers.fwknop import HMAC, KEY, serve_access
from tests.helpers.lab import require
from tests.helpers.nobody import NOBODY, as_nobody, sesame_argv
from tests.helpers.spa import ALICE, CLIENT_CONFIG, SERVER_CONFIG

CLIENT = CLIENT_CONFIG.replace("spa_port = 62201\n", 'spa_port = 62201\ndoor = "ssh"\n')


def nobody(lab, *args: str, check: bool = True):
    """``sesame ARGS`` as nobody, in the user's namespace."""
    return lab.run(lab.user.netns, *as_nobody(), *sesame_argv(), *args, check=check)


@pytest.fixture
def home():
    """A directory the ordinary user can reach (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sesame-nobody-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def private_to_nobody(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    os.chown(path, NOBODY, NOBODY)
    return str(path)


def test_client_commands_as_an_ordinary_user(lab, home):
    require("setpriv")
    keys = nobody(lab, "keygen", "bob", "--door", "ssh").stdout
    assert re.search(r'key = "[A-Za-z0-9+/]{43}="', keys)
    daemon = lab.serve(SERVER_CONFIG.format(tmp=lab.tmp, alice=ALICE, bob=ALICE, open_for=30))
    config = private_to_nobody(
        home / "client.toml", CLIENT.format(host=lab.server.ipv4, user="alice", key=ALICE)
    )
    mark = daemon.mark()
    nobody(lab, "knock", "home", "--client-config", config)  # the server's door
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}", 10, since=mark)
    printed = nobody(lab, "sequence", "home", "--door", "phone", "--client-config", config)
    assert len(printed.stdout.split()) == 4
    nobody(lab, "knock", lab.server.ipv4, "7000", "8000", "9000/udp")


def test_a_low_source_port_is_the_one_thing_that_needs_more(lab, home):
    require("setpriv")
    serve_access(lab)
    rc = (
        f"[office]\nSPA_SERVER {lab.server.ipv4}\nACCESS tcp/22\nKEY_BASE64 {KEY}\n"
        f"HMAC_KEY_BASE64 {HMAC}\nSPOOF_USER alice\n"
    )
    low = private_to_nobody(home / "low", rc + "SPA_SOURCE_PORT 800\n")
    result = nobody(
        lab,
        "knock",
        "--fwknop",
        "--rc-file",
        low,
        "office",
        check=False,
    )
    assert result.returncode == 1
    assert "sending from port 800 needs root or CAP_NET_BIND_SERVICE" in result.stderr
    high = private_to_nobody(home / "high", rc + "SPA_SOURCE_PORT 40800\n")
    mark = lab.daemon.mark()
    nobody(lab, "knock", "--fwknop", "--rc-file", high, "office")
    lab.daemon.wait_for(rf"opened door fwknop1 to {lab.user.ipv4}", 10, since=mark)
