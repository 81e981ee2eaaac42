"""fwknop, both ways: Debian's fwknop client against sesame serving an access.conf, and
sesame's fwknop-format client against Debian's fwknopd."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from sesame.lab import blocked, reachable
from sesame.netns import inside
from tests.helpers.fwknop import ACCESS, HMAC, KEY, private, serve_access
from tests.helpers.lab import require

OTHER = "eHh4" * 21 + "eA=="  # 64 bytes of "x": some other HMAC key
RC = f"""\
[default]

[home]
SPA_SERVER          {{server}}
ACCESS              tcp/22
KEY_BASE64          {KEY}
HMAC_KEY_BASE64     {HMAC}
USE_HMAC            Y
SPOOF_USER          alice
"""


def fwknop(lab, netns: str, rc: str, *extra: str) -> subprocess.CompletedProcess:
    client = require("fwknop")
    return lab.run(netns, client, "--rc-file", rc, "-n", "home", "--no-save-args", *extra)


def send(netns: str, address: str, payload: bytes) -> None:
    with inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.sendto(payload, (address, 62201))


def test_debian_fwknop_opens_sesame_and_cannot_replay(lab):
    daemon = serve_access(lab)
    rc = private(Path(lab.tmp, "rc"), RC.format(server=lab.server.ipv4))
    saved = Path(lab.tmp, "packet")
    mark = daemon.mark()
    fwknop(lab, lab.user.netns, rc, "-a", lab.user.ipv4, "-B", str(saved))
    daemon.wait_for(
        rf"opened door fwknop1 to {lab.user.ipv4}: 22/tcp \(user alice\)", 10, since=mark
    )
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)
    [left] = lab.grants().values()
    assert 25 < left <= 30  # FW_ACCESS_TIMEOUT
    packet = saved.read_bytes().strip()
    for netns in (lab.user.netns, lab.stranger.netns):
        mark = daemon.mark()
        send(netns, lab.server.ipv4, packet)
        daemon.wait_for(r"dropped packet from \S+: replay$", 10, since=mark)
    # ... also after a restart: the digest is on record in the state directory.
    daemon.stop()
    daemon = serve_access(lab)
    mark = daemon.mark()
    send(lab.stranger.netns, lab.server.ipv4, packet)
    daemon.wait_for(r"dropped packet from \S+: replay$", 10, since=mark)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)


def test_fwknop_asking_for_another_address_is_refused_by_default(lab):
    daemon = serve_access(lab)
    rc = private(Path(lab.tmp, "rc"), RC.format(server=lab.server.ipv4))
    mark = daemon.mark()
    fwknop(lab, lab.user.netns, rc, "-a", lab.stranger.ipv4)
    daemon.wait_for(r"dropped packet from \S+: address differs from source$", 10, since=mark)
    fwknop(lab, lab.user.netns, rc, "-s")  # 0.0.0.0: refused unless REQUIRE_SOURCE_ADDRESS N
    daemon.wait_for(r"dropped packet from \S+: fwknop source address required$", 10, since=mark)
    assert lab.grants() == {}
    # The per-stanza sesame option allows it, for NAT users.
    daemon.stop()
    daemon = serve_access(lab, ACCESS + "SESAME_ALLOW_OTHER_ADDRESS Y\nREQUIRE_SOURCE_ADDRESS N\n")
    mark = daemon.mark()
    fwknop(lab, lab.user.netns, rc, "-a", lab.stranger.ipv4)
    daemon.wait_for(rf"opened door fwknop1 to {lab.stranger.ipv4}", 10, since=mark)
    fwknop(lab, lab.user.netns, rc, "-s")
    daemon.wait_for(rf"opened door fwknop1 to {lab.user.ipv4}", 10, since=mark)


def test_fwknop_options_are_honoured(lab):
    daemon = serve_access(lab, ACCESS + "RESTRICT_PORTS tcp/23\n")
    rc = private(Path(lab.tmp, "rc"), RC.format(server=lab.server.ipv4))
    mark = daemon.mark()
    fwknop(lab, lab.user.netns, rc, "-a", lab.user.ipv4, "-A", "tcp/23")
    daemon.wait_for(r"dropped packet from \S+: fwknop port not allowed$", 10, since=mark)
    fwknop(lab, lab.user.netns, rc, "-a", lab.user.ipv4, "--spoof-user", "bob")
    daemon.wait_for(r"dropped packet from \S+: fwknop username$", 10, since=mark)
    fwknop(lab, lab.user.netns, rc, "-a", lab.user.ipv4, "--fw-timeout", "500")
    daemon.wait_for(rf"opened door fwknop1 to {lab.user.ipv4}", 10, since=mark)
    [left] = lab.grants().values()
    assert 55 < left <= 60  # the client's timeout, capped by MAX_FW_TIMEOUT
    bad = private(Path(lab.tmp, "rc2"), RC.format(server=lab.server.ipv4).replace(HMAC, OTHER))
    fwknop(lab, lab.user.netns, bad, "-a", lab.user.ipv4)
    daemon.wait_for(r"dropped packet from \S+: fwknop bad hmac$", 10, since=mark)


def test_sesame_knock_fwknop_opens_debian_fwknopd(lab):
    fwknopd = require("fwknopd")
    require("iptables")
    run = Path(lab.tmp, "run")
    run.mkdir()
    conf = private(Path(lab.tmp, "fwknopd.conf"), f"PCAP_INTF br0\nFWKNOP_RUN_DIR {run}\n")
    access = private(Path(lab.tmp, "access.conf"), ACCESS)
    out = Path(lab.tmp, "fwknopd.out")
    with open(out, "w") as handle:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lab.server.netns,
                fwknopd,
                "-f",
                "-v",
                "-c",
                conf,
                "-a",
                access,
                "-i",
                "br0",
                "-d",
                f"{run}/digest.cache",
                "-p",
                f"{run}/pid",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_text(out, "Starting fwknopd main event loop", process)
            rc = private(Path(lab.tmp, "rc"), RC.format(server=lab.server.ipv4))
            lab.sesame(lab.user.netns, "knock", "--fwknop", "--fwknop-rc", rc, "home")
            wait_for_text(out, f"Added access rule to FWKNOP_INPUT for {lab.user.ipv4}", process)
            # ... and with flags instead of a stanza.
            lab.sesame(
                lab.stranger.netns,
                "knock",
                "--fwknop",
                lab.server.ipv4,
                "-A",
                "tcp/22",
                "--fwknop-key-base64",
                KEY,
                "--fwknop-hmac-key-base64",
                HMAC,
            )
            text = wait_for_text(out, "Username: ", process)
            assert "Username: " in text
        finally:
            process.terminate()
            process.wait(10)


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while text not in (content := path.read_text()):
        assert process.poll() is None, content
        assert time.monotonic() < deadline, content[-3000:]
        time.sleep(0.05)
    return content


def test_import_fwknop_and_refusals(lab):
    access = private(Path(lab.tmp, "access.conf"), ACCESS)
    out = subprocess.run(
        [sys.executable, "-m", "sesame", "import", "fwknop", access],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    converted = private(Path(lab.tmp, "converted.toml"), out)
    from sesame import config

    [stanza] = config.load(converted).fwknop
    assert stanza.require_username == "alice" and stanza.max_fw_timeout == 60
    assert [str(p) for p in stanza.open_ports] == ["22/tcp"]
    refused = private(Path(lab.tmp, "gpg.conf"), ACCESS + "GPG_REQUIRE_SIG Y\n")
    result = subprocess.run(
        [sys.executable, "-m", "sesame", "import", "fwknop", refused],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{refused}:8: GPG_REQUIRE_SIG: GnuPG mode is not supported")
    os.chmod(access, 0o644)
    result = subprocess.run(
        [sys.executable, "-m", "sesame", "import", "fwknop", access],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "chmod 600" in result.stderr
